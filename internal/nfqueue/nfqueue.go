// Package nfqueue is a minimal NFQUEUE consumer speaking nfnetlink_queue over
// github.com/mdlayher/netlink (github.com/florianl/go-nfqueue is not
// available here). Packets that an iptables `-j NFQUEUE --queue-num N` rule
// sends to queue N of a network namespace are handed to a function that
// returns a verdict, one at a time.
//
// The wire format is include/uapi/linux/netfilter/nfnetlink_queue.h: every
// message is a netlink header, a struct nfgenmsg (family, version, queue
// number in network byte order) and netlink attributes whose payloads are
// big-endian structs.
package nfqueue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Message types and attributes of nfnetlink_queue.
const (
	subsysQueue = 3 // NFNL_SUBSYS_QUEUE

	msgPacket  = 0 // NFQNL_MSG_PACKET
	msgVerdict = 1 // NFQNL_MSG_VERDICT
	msgConfig  = 2 // NFQNL_MSG_CONFIG

	attrPacketHdr  = 1  // NFQA_PACKET_HDR
	attrVerdictHdr = 2  // NFQA_VERDICT_HDR
	attrPayload    = 10 // NFQA_PAYLOAD

	attrCfgCmd    = 1 // NFQA_CFG_CMD
	attrCfgParams = 2 // NFQA_CFG_PARAMS

	cmdBind    = 1 // NFQNL_CFG_CMD_BIND
	copyPacket = 2 // NFQNL_COPY_PACKET
)

// Verdict is what happens to a queued packet.
type Verdict uint32

// Verdicts (NF_DROP, NF_ACCEPT).
const (
	Drop   Verdict = 0
	Accept Verdict = 1
)

// Packet is one queued packet.
type Packet struct {
	ID      uint32 // the kernel's packet id, echoed in the verdict
	HWProto uint16 // ethertype: 0x0800 IPv4, 0x86dd IPv6
	Hook    uint8  // netfilter hook the packet was queued from
	Payload []byte // the network-layer packet (IP header first)
}

// Queue is a bound queue.
type Queue struct {
	c   *netlink.Conn
	num uint16
}

// Open binds queue num in the network namespace at nsPath (empty: here),
// asking for whole packets.
func Open(nsPath string, num uint16) (*Queue, error) {
	cfg := &netlink.Config{}
	if nsPath != "" {
		f, err := os.Open(nsPath)
		if err != nil {
			return nil, fmt.Errorf("nfqueue: netns: %w", err)
		}
		defer f.Close()
		cfg.NetNS = int(f.Fd())
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("nfqueue: dial: %w", err)
	}
	q := &Queue{c: c, num: num}
	// struct nfqnl_msg_config_cmd { u8 command; u8 pad; be16 pf; }
	if err := q.config(attrCfgCmd, []byte{cmdBind, 0, 0, unix.AF_INET}); err != nil {
		c.Close()
		return nil, fmt.Errorf("nfqueue: bind queue %d: %w", num, err)
	}
	// struct nfqnl_msg_config_params { be32 copy_range; u8 copy_mode; } packed
	params := binary.BigEndian.AppendUint32(nil, 0xffff)
	params = append(params, copyPacket)
	if err := q.config(attrCfgParams, params); err != nil {
		c.Close()
		return nil, fmt.Errorf("nfqueue: copy mode: %w", err)
	}
	return q, nil
}

func header(msg uint8) netlink.HeaderType {
	return netlink.HeaderType(subsysQueue<<8 | uint16(msg))
}

func (q *Queue) nfgen() []byte {
	return binary.BigEndian.AppendUint16([]byte{unix.AF_UNSPEC, 0}, q.num)
}

func (q *Queue) config(attr uint16, data []byte) error {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(attr, data)
	b, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = q.c.Execute(netlink.Message{
		Header: netlink.Header{Type: header(msgConfig), Flags: netlink.Request | netlink.Acknowledge},
		Data:   append(q.nfgen(), b...),
	})
	return err
}

// Close unbinds the queue. Queued packets are then dropped by the kernel, or
// bypass the queue when the rule says --queue-bypass.
func (q *Queue) Close() error { return q.c.Close() }

// Run hands every queued packet to fn and sends its verdict, until ctx is
// done. fn must not keep Payload.
func (q *Queue) Run(ctx context.Context, fn func(Packet) Verdict) error {
	var wg sync.WaitGroup
	done := make(chan struct{})
	defer func() {
		close(done)
		wg.Wait()
	}()
	wg.Go(func() {
		select {
		case <-ctx.Done():
			_ = q.c.SetReadDeadline(time.Unix(1, 0))
		case <-done:
		}
	})
	// The kernel drops queued packets when our socket buffer overflows
	// (ENOBUFS); keep going, the verdict-less packets are simply lost.
	_ = q.c.SetOption(netlink.NoENOBUFS, true)
	for {
		msgs, err := q.c.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("nfqueue: receive: %w", err)
		}
		for _, m := range msgs {
			p, err := ParseMessage(m)
			if err != nil {
				continue
			}
			if err := q.verdict(p.ID, fn(p)); err != nil {
				return err
			}
		}
	}
}

func (q *Queue) verdict(id uint32, v Verdict) error {
	// struct nfqnl_msg_verdict_hdr { be32 verdict; be32 id; }
	hdr := binary.BigEndian.AppendUint32(nil, uint32(v))
	hdr = binary.BigEndian.AppendUint32(hdr, id)
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(attrVerdictHdr, hdr)
	b, err := ae.Encode()
	if err != nil {
		return err
	}
	if _, err := q.c.Send(netlink.Message{
		Header: netlink.Header{Type: header(msgVerdict), Flags: netlink.Request},
		Data:   append(q.nfgen(), b...),
	}); err != nil {
		return fmt.Errorf("nfqueue: verdict: %w", err)
	}
	return nil
}

// errNotPacket marks a message that is not a queued packet.
var errNotPacket = errors.New("nfqueue: not a packet message")

// ParseMessage decodes an NFQNL_MSG_PACKET message. Malformed input is an
// error, never a panic.
func ParseMessage(m netlink.Message) (Packet, error) {
	if m.Header.Type != header(msgPacket) {
		return Packet{}, errNotPacket
	}
	if len(m.Data) < 4 {
		return Packet{}, fmt.Errorf("nfqueue: message of %d bytes has no nfgenmsg", len(m.Data))
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return Packet{}, fmt.Errorf("nfqueue: attributes: %w", err)
	}
	var p Packet
	var haveHdr bool
	for ad.Next() {
		switch ad.Type() {
		case attrPacketHdr:
			b := ad.Bytes()
			if len(b) < 7 {
				return Packet{}, fmt.Errorf("nfqueue: packet header of %d bytes", len(b))
			}
			p.ID = binary.BigEndian.Uint32(b[0:4])
			p.HWProto = binary.BigEndian.Uint16(b[4:6])
			p.Hook = b[6]
			haveHdr = true
		case attrPayload:
			p.Payload = ad.Bytes()
		}
	}
	if err := ad.Err(); err != nil {
		return Packet{}, fmt.Errorf("nfqueue: attributes: %w", err)
	}
	if !haveHdr {
		return Packet{}, errors.New("nfqueue: packet without NFQA_PACKET_HDR")
	}
	return p, nil
}
