package app

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
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

// maxKafkaResponse bounds a response we read (metadata of a large cluster is
// a few MiB).
const maxKafkaResponse = 64 << 20

func (kafkaProbe) speak(ctx context.Context, c *conn, r *probe.Result) error {
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("connprobe"))
	var corr int32
	roundTrip := func(req kmsg.Request, resp kmsg.Response) error {
		corr++
		c.wait(fmt.Sprintf("answer to %s v%d", kmsg.NameForKey(req.Key()), req.GetVersion()))
		if _, err := c.Write(f.AppendRequest(nil, req, corr)); err != nil {
			return fmt.Errorf("kafka: write: %w", err)
		}
		body, err := readKafkaResponse(c, corr, req.Key() != 18 && req.IsFlexible())
		if err != nil {
			return err
		}
		resp.SetVersion(req.GetVersion())
		if err := resp.ReadFrom(body); err != nil {
			return serverErrorf("malformed %s v%d response: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
		}
		return nil
	}

	t0 := time.Now()
	// ApiVersions v3 (Kafka 2.4+); an older broker answers
	// UNSUPPORTED_VERSION in the v0 format and we ask again with v0.
	av := kmsg.NewPtrApiVersionsRequest()
	av.Version = 3
	av.ClientSoftwareName = "connprobe"
	av.ClientSoftwareVersion = "1"
	avr := kmsg.NewPtrApiVersionsResponse()
	if err := roundTrip(av, avr); err != nil {
		return err
	}
	if avr.ErrorCode == kerr.UnsupportedVersion.Code {
		av.Version = 0
		avr = kmsg.NewPtrApiVersionsResponse()
		if err := roundTrip(av, avr); err != nil {
			return err
		}
	}
	if avr.ErrorCode != 0 {
		return serverErrorf("ApiVersions: %v", kerr.ErrorForCode(avr.ErrorCode))
	}
	apiTime := time.Since(t0)
	mdVersion := int16(-1)
	for _, k := range avr.ApiKeys {
		if k.ApiKey == 3 {
			mdVersion = min(k.MaxVersion, kmsg.NewPtrMetadataRequest().MaxVersion())
			if mdVersion < k.MinVersion {
				return serverErrorf("broker's Metadata versions %d-%d are unknown to this client", k.MinVersion, k.MaxVersion)
			}
		}
	}
	if mdVersion < 0 {
		return serverErrorf("broker does not list the Metadata API among %d APIs", len(avr.ApiKeys))
	}

	t1 := time.Now()
	md := kmsg.NewPtrMetadataRequest()
	md.Version = mdVersion
	md.Topics = nil // all topics
	mdr := kmsg.NewPtrMetadataResponse()
	if err := roundTrip(md, mdr); err != nil {
		return err
	}
	if mdr.ErrorCode != 0 {
		return serverErrorf("Metadata: %v", kerr.ErrorForCode(mdr.ErrorCode))
	}
	s := SummarizeMetadata(mdr)
	if len(s.Leaderless) > 0 {
		r.Evidencef("finding: %d partition(s) without a leader: %s", s.LeaderlessCount, strings.Join(s.Leaderless, ", "))
	}
	// The broker summary goes last: it is the line `probe run` shows.
	r.Evidencef("Kafka ApiVersions v%d in %s (%d APIs); Metadata v%d in %s: %s",
		av.Version, probe.Round(apiTime), len(avr.ApiKeys), mdVersion, probe.Round(time.Since(t1)), s.Brokers)
	return nil
}

// readKafkaResponse reads one size-prefixed response, checks its
// correlation id and skips the flexible header's tagged fields.
func readKafkaResponse(c *conn, corr int32, flexibleHeader bool) ([]byte, error) {
	var hdr [4]byte
	if err := readFull(c, hdr[:]); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	n := int32(binary.BigEndian.Uint32(hdr[:]))
	if n < 4 || n > maxKafkaResponse {
		return nil, serverErrorf("not a Kafka response: size %d (bytes %x)", n, hdr)
	}
	b := make([]byte, n)
	if err := readFull(c, b); err != nil {
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

// skipTags skips a tagged-field section: a count, then (tag, size, bytes).
func skipTags(b []byte) ([]byte, bool) {
	num, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, false
	}
	b = b[n:]
	for ; num > 0; num-- {
		if _, n = binary.Uvarint(b); n <= 0 {
			return nil, false
		}
		b = b[n:]
		size, n := binary.Uvarint(b)
		if n <= 0 || size > uint64(len(b)-n) {
			return nil, false
		}
		b = b[n+int(size):]
	}
	return b, true
}

// MetadataSummary is what the evidence says about a Metadata response.
type MetadataSummary struct {
	// Brokers: "cluster kfake, controller 0, 3 broker(s): 0=127.0.0.1:9092 …; 2 topic(s), 6 partition(s)".
	Brokers string
	// Leaderless names up to 10 partitions with no leader ("topic/3").
	Leaderless      []string
	LeaderlessCount int
}

// SummarizeMetadata describes brokers, topics and leaderless partitions.
func SummarizeMetadata(m *kmsg.MetadataResponse) MetadataSummary {
	var s MetadataSummary
	bs := slices.Clone(m.Brokers)
	slices.SortFunc(bs, func(a, b kmsg.MetadataResponseBroker) int { return int(a.NodeID) - int(b.NodeID) })
	names := make([]string, 0, len(bs))
	for _, b := range bs {
		names = append(names, fmt.Sprintf("%d=%s:%d", b.NodeID, printable([]byte(b.Host)), b.Port))
	}
	var head []string
	if m.ClusterID != nil {
		head = append(head, "cluster "+printable([]byte(*m.ClusterID)))
	}
	if m.Version >= 1 && m.ControllerID >= 0 {
		head = append(head, fmt.Sprintf("controller %d", m.ControllerID))
	}
	parts := 0
	for _, t := range m.Topics {
		name := "?"
		if t.Topic != nil {
			name = printable([]byte(*t.Topic))
		}
		for _, p := range t.Partitions {
			parts++
			if p.Leader < 0 || p.ErrorCode == kerr.LeaderNotAvailable.Code {
				s.LeaderlessCount++
				if len(s.Leaderless) < 10 {
					s.Leaderless = append(s.Leaderless, fmt.Sprintf("%s/%d", name, p.Partition))
				}
			}
		}
	}
	head = append(head, fmt.Sprintf("%d broker(s): %s", len(bs), strings.Join(names, " ")))
	s.Brokers = fmt.Sprintf("%s; %d topic(s), %d partition(s)", strings.Join(head, ", "), len(m.Topics), parts)
	return s
}
