package nfqueue

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"
)

func packetMessage(id uint32, payload []byte) netlink.Message {
	ae := netlink.NewAttributeEncoder()
	hdr := binary.BigEndian.AppendUint32(nil, id)
	hdr = binary.BigEndian.AppendUint16(hdr, 0x0800)
	hdr = append(hdr, 1) // NF_INET_LOCAL_IN
	ae.Bytes(attrPacketHdr, hdr)
	ae.Bytes(attrPayload, payload)
	b, _ := ae.Encode()
	return netlink.Message{Header: netlink.Header{Type: header(msgPacket)}, Data: append([]byte{2, 0, 0, 7}, b...)}
}

func TestParseMessage(t *testing.T) {
	p, err := ParseMessage(packetMessage(42, []byte{0x45, 1, 2}))
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != 42 || p.HWProto != 0x0800 || p.Hook != 1 || len(p.Payload) != 3 {
		t.Errorf("got %+v", p)
	}
	for name, m := range map[string]netlink.Message{
		"verdict message":  {Header: netlink.Header{Type: header(msgVerdict)}, Data: []byte{0, 0, 0, 7}},
		"no nfgenmsg":      {Header: netlink.Header{Type: header(msgPacket)}, Data: []byte{0}},
		"no packet header": {Header: netlink.Header{Type: header(msgPacket)}, Data: []byte{2, 0, 0, 7}},
		"short header":     {Header: netlink.Header{Type: header(msgPacket)}, Data: []byte{2, 0, 0, 7, 6, 0, 1, 0, 1, 2, 0, 0}},
	} {
		if _, err := ParseMessage(m); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	f.Add(packetMessage(42, []byte{0x45, 1, 2}).Data)
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseMessage(netlink.Message{Header: netlink.Header{Type: header(msgPacket)}, Data: data})
	})
}
