package app

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/connprobe/connprobe/probe"
)

// kafkaProbe speaks the Kafka protocol with franz-go's kmsg (the request
// and response types a Kafka client is built from): ApiVersions, then
// Metadata at the highest version both sides know, over the probe's one
// connection. A full client (kgo) is not used because it opens connections
// of its own to every broker the metadata names. Leaderless partitions are
// reported as a finding in the evidence; the broker itself answered, so the
// attempt stays ok.
type kafkaProbe struct{}

func newKafka(t probe.Target, _ Config) (speaker, error) {
	if u := t.URL; u != nil {
		if u.User != nil {
			return nil, fmt.Errorf("kafka: SASL credentials are not supported")
		}
		if len(u.Query()) > 0 || strings.Trim(u.Path, "/") != "" {
			return nil, fmt.Errorf("kafka: want kafka://host:port, without path or options")
		}
	}
	return kafkaProbe{}, nil
}

// maxKafkaMetadata is the byte budget of the Metadata answer: all topics of
// a cluster, about 40 bytes a partition, so 4 MiB holds some 100,000
// partitions. Every other answer has MaxAnswer.
const maxKafkaMetadata = 4 << 20

func (kafkaProbe) speak(ctx context.Context, c *conn, r *probe.Result) error {
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("connprobe"))
	var corr int32
	// roundTrip sends req and returns the body of its response. The body is
	// decoded by our own decoders (decodeApiVersions, decodeMetadata), not
	// by kmsg: kmsg allocates a slice for every array count a broker
	// declares (up to one element per remaining byte, each element up to a
	// hundred bytes), so a hostile broker could make it allocate a hundred
	// times its answer.
	roundTrip := func(req kmsg.Request) ([]byte, error) {
		corr++
		c.wait(fmt.Sprintf("answer to %s v%d", kmsg.NameForKey(req.Key()), req.GetVersion()))
		if _, err := c.Write(f.AppendRequest(nil, req, corr)); err != nil {
			return nil, fmt.Errorf("kafka: write: %w", err)
		}
		return readKafkaResponse(c, corr, req.Key() != 18 && req.IsFlexible())
	}

	t0 := time.Now()
	// ApiVersions v3 (Kafka 2.4+); an older broker answers
	// UNSUPPORTED_VERSION in the v0 format and we ask again with v0.
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 3
	av.ClientSoftwareName = "connprobe"
	av.ClientSoftwareVersion = "1"
	body, err := roundTrip(av)
	if err != nil {
		return err
	}
	avr, err := decodeApiVersions(body, av.Version)
	if err != nil {
		return err
	}
	if avr.ErrorCode == kerr.UnsupportedVersion.Code {
		av.Version = 0
		if body, err = roundTrip(av); err != nil {
			return err
		}
		if avr, err = decodeApiVersions(body, av.Version); err != nil {
			return err
		}
	}
	if avr.ErrorCode != 0 {
		return serverErrorf("ApiVersions: %v", kerr.ErrorForCode(avr.ErrorCode))
	}
	apiTime := time.Since(t0)
	mdVersion := int16(-1)
	if avr.HasMetadata {
		mdVersion = min(avr.MetadataMax, kmsg.NewPtrMetadataRequest().MaxVersion())
		if mdVersion < avr.MetadataMin || mdVersion < 0 {
			return serverErrorf("broker's Metadata versions %d-%d are unknown to this client", avr.MetadataMin, avr.MetadataMax)
		}
	}
	if mdVersion < 0 {
		return serverErrorf("broker does not list the Metadata API among %d APIs", avr.APIs)
	}

	t1 := time.Now()
	md := kmsg.NewPtrMetadataRequest()
	md.Version = mdVersion
	md.Topics = nil // all topics
	c.setBudget(maxKafkaMetadata)
	if body, err = roundTrip(md); err != nil {
		return err
	}
	s, err := decodeMetadata(body, mdVersion)
	if err != nil {
		return err
	}
	if s.ErrorCode != 0 {
		return serverErrorf("Metadata: %v", kerr.ErrorForCode(s.ErrorCode))
	}
	if len(s.Leaderless) > 0 {
		r.Evidencef("finding: %d partition(s) without a leader: %s", s.LeaderlessCount, strings.Join(s.Leaderless, ", "))
	}
	// The broker summary goes last: it is the line `probe run` shows.
	r.Evidencef("Kafka ApiVersions v%d in %s (%d APIs); Metadata v%d in %s: %s",
		av.Version, probe.Round(apiTime), avr.APIs, mdVersion, probe.Round(time.Since(t1)), s.Brokers)
	return nil
}

// readKafkaResponse reads one size-prefixed response, checks its
// correlation id and skips the flexible header's tagged fields. The size is
// checked against the answer's byte budget before the body is allocated.
func readKafkaResponse(c *conn, corr int32, flexibleHeader bool) ([]byte, error) {
	var hdr [4]byte
	if err := readFull(c, hdr[:]); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	n := int32(binary.BigEndian.Uint32(hdr[:]))
	if text(hdr[:]) {
		// A size of half a GiB or more spelled in ASCII: a text protocol
		// (an SSH banner, an HTTP status line), not a broker.
		more := make([]byte, 60)
		k, _ := c.Read(more)
		return nil, serverErrorf("not a Kafka server: answered %q", printable(append(hdr[:], more[:k]...)))
	}
	if n < 4 {
		return nil, serverErrorf("not a Kafka response: size %d (bytes %x, %q)", n, hdr, printable(hdr[:]))
	}
	if int64(n) > c.left() {
		return nil, c.tooLarge(fmt.Sprintf("a Kafka response of %d bytes (bytes %x, %q)", n, hdr, printable(hdr[:])))
	}
	b, err := readN(c, int64(n))
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if got := int32(binary.BigEndian.Uint32(b)); got != corr {
		return nil, serverErrorf("Kafka response for correlation id %d, want %d", got, corr)
	}
	b = b[4:]
	if flexibleHeader {
		rest, ok := skipTags(b)
		if !ok {
			return nil, serverErrorf("malformed Kafka response header")
		}
		b = rest
	}
	return b, nil
}

// text reports whether b is printable ASCII.
func text(b []byte) bool {
	for _, x := range b {
		if x < 0x20 || x > 0x7e {
			return false
		}
	}
	return true
}

// skipTags skips a tagged-field section: a count, then (tag, size, bytes).
func skipTags(b []byte) ([]byte, bool) {
	r := kread{b: b, flex: true}
	r.tags()
	return r.b, !r.bad
}
