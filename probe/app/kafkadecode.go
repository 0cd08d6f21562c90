package app

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// Our own decoders of the two Kafka responses the probe reads. They walk the
// body in place: nothing is allocated per element a broker declares, every
// count is checked against the bytes left (times the smallest size of an
// element) before the walk, and a body that ends early is malformed, so a
// response costs its own bytes and a few small strings, whatever it claims.

// kread reads Kafka primitives from b; the first short read marks it bad
// (like franz-go's kbin.Reader) and every later read returns zeros.
type kread struct {
	b    []byte
	flex bool // a flexible version: compact strings and arrays, tagged fields
	bad  bool
}

func (r *kread) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad, r.b = true, nil
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *kread) i16() int16 {
	if b := r.take(2); b != nil {
		return int16(binary.BigEndian.Uint16(b))
	}
	return 0
}

func (r *kread) i32() int32 {
	if b := r.take(4); b != nil {
		return int32(binary.BigEndian.Uint32(b))
	}
	return 0
}

func (r *kread) uvarint() uint64 {
	if r.bad {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

// str reads a (nullable) string; null is reported as nil.
func (r *kread) str() []byte {
	var n int64
	if r.flex {
		n = int64(r.uvarint()) - 1 // 0 is null
	} else {
		n = int64(r.i16())
	}
	if n < 0 || r.bad {
		return nil
	}
	if n > int64(len(r.b)) {
		r.bad, r.b = true, nil
		return nil
	}
	return r.take(int(n))
}

// array reads an array's count; minElem is the smallest encoding of one
// element, so a count the remaining bytes cannot hold is refused before
// the caller loops over it. A null array has no elements.
func (r *kread) array(minElem int) int {
	var n int64
	if r.flex {
		n = int64(r.uvarint()) - 1
	} else {
		n = int64(r.i32())
	}
	if r.bad || n < 0 {
		return 0
	}
	if n > int64(len(r.b))/int64(minElem) {
		r.bad, r.b = true, nil
		return 0
	}
	return int(n)
}

// int32s skips an array of int32.
func (r *kread) int32s() {
	n := r.array(4)
	r.take(4 * n)
}

// tags skips a tagged-field section (flexible versions only).
func (r *kread) tags() {
	if !r.flex {
		return
	}
	n := r.uvarint()
	if n > uint64(len(r.b))/2 { // a tag and its size take a byte each
		r.bad, r.b = true, nil
		return
	}
	for ; n > 0 && !r.bad; n-- {
		r.uvarint() // tag
		size := r.uvarint()
		if size > uint64(len(r.b)) {
			r.bad, r.b = true, nil
			return
		}
		r.take(int(size))
	}
}

// ApiVersionsSummary is what the probe needs of an ApiVersions response.
type ApiVersionsSummary struct {
	ErrorCode                int16
	APIs                     int  // how many APIs the broker lists
	HasMetadata              bool // it lists Metadata (key 3)
	MetadataMin, MetadataMax int16
}

// decodeApiVersions decodes an ApiVersions response of the given version.
// A broker that does not know the version answers UNSUPPORTED_VERSION (35)
// in the v0 format: only the error code is read then.
func decodeApiVersions(body []byte, version int16) (ApiVersionsSummary, error) {
	r := kread{b: body, flex: version >= 3}
	var s ApiVersionsSummary
	s.ErrorCode = r.i16()
	if r.bad {
		return s, serverErrorf("malformed ApiVersions v%d response: %d byte(s)", version, len(body))
	}
	if s.ErrorCode == 35 {
		return s, nil
	}
	minElem := 6
	if r.flex {
		minElem = 7
	}
	s.APIs = r.array(minElem)
	for range s.APIs {
		key, lo, hi := r.i16(), r.i16(), r.i16()
		r.tags()
		if key == 3 && !r.bad {
			s.HasMetadata, s.MetadataMin, s.MetadataMax = true, lo, hi
		}
	}
	if version >= 1 {
		r.i32() // throttle
	}
	r.tags()
	if r.bad {
		return ApiVersionsSummary{}, serverErrorf("malformed ApiVersions v%d response: %d byte(s)", version, len(body))
	}
	return s, nil
}

// MetadataSummary is what the evidence says about a Metadata response.
type MetadataSummary struct {
	ErrorCode int16 // top-level error (v13+)
	// Brokers: "cluster kfake, controller 0, 3 broker(s): 0=127.0.0.1:9092 …; 2 topic(s), 6 partition(s)".
	Brokers string
	// Leaderless names up to 10 partitions with no leader ("topic/3").
	Leaderless      []string
	LeaderlessCount int
}

// maxListedBrokers bounds the brokers the evidence names.
const maxListedBrokers = 32

// decodeMetadata decodes a Metadata response (v0–v13) into its summary:
// brokers, cluster, controller, topics and partitions, and the partitions
// without a leader (leader -1 or LEADER_NOT_AVAILABLE).
func decodeMetadata(body []byte, version int16) (MetadataSummary, error) {
	r := kread{b: body, flex: version >= 9}
	var s MetadataSummary
	if version >= 3 {
		r.i32() // throttle
	}
	type broker struct {
		id   int32
		addr string
	}
	var brokers []broker
	nb := r.array(9) // node 4, host >= 1, port 4
	for range nb {
		id := r.i32()
		host := r.str()
		port := r.i32()
		if version >= 1 {
			r.str() // rack
		}
		r.tags()
		if r.bad {
			break
		}
		if len(brokers) < maxListedBrokers {
			brokers = append(brokers, broker{id, fmt.Sprintf("%d=%s:%d", id, printable(host), port)})
		}
	}
	var head []string
	if version >= 2 {
		if id := r.str(); id != nil {
			head = append(head, "cluster "+printable(id))
		}
	}
	if version >= 1 {
		if ctl := r.i32(); ctl >= 0 {
			head = append(head, fmt.Sprintf("controller %d", ctl))
		}
	}
	topics := r.array(4) // error 2, name >= 1, partitions >= 1
	parts := 0
	for range topics {
		if r.bad {
			break
		}
		r.i16() // error
		name := r.str()
		if version >= 10 {
			r.take(16) // topic id
		}
		if version >= 1 {
			r.take(1) // is internal
		}
		np := r.array(12) // error 2, partition 4, leader 4, replicas >= 1, isr >= 1
		for range np {
			errCode := r.i16()
			partition := r.i32()
			leader := r.i32()
			if version >= 7 {
				r.i32() // leader epoch
			}
			r.int32s() // replicas
			r.int32s() // isr
			if version >= 5 {
				r.int32s() // offline replicas
			}
			r.tags()
			if r.bad {
				break
			}
			parts++
			if leader < 0 || errCode == 5 { // LEADER_NOT_AVAILABLE
				s.LeaderlessCount++
				if len(s.Leaderless) < 10 {
					n := "?"
					if name != nil {
						n = printable(name)
					}
					s.Leaderless = append(s.Leaderless, fmt.Sprintf("%s/%d", n, partition))
				}
			}
		}
		if version >= 8 {
			r.i32() // topic authorized operations
		}
		r.tags()
	}
	if version >= 8 && version <= 10 {
		r.i32() // cluster authorized operations
	}
	if version >= 13 {
		s.ErrorCode = r.i16()
	}
	r.tags()
	if r.bad {
		return MetadataSummary{}, serverErrorf("malformed Metadata v%d response: %d byte(s)", version, len(body))
	}
	slices.SortFunc(brokers, func(a, b broker) int { return int(a.id) - int(b.id) })
	names := make([]string, 0, len(brokers)+1)
	for _, b := range brokers {
		names = append(names, b.addr)
	}
	if nb > len(brokers) {
		names = append(names, fmt.Sprintf("and %d more", nb-len(brokers)))
	}
	head = append(head, fmt.Sprintf("%d broker(s): %s", nb, strings.Join(names, " ")))
	s.Brokers = fmt.Sprintf("%s; %d topic(s), %d partition(s)", strings.Join(head, ", "), topics, parts)
	return s, nil
}
