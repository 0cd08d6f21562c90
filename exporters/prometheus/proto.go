package prometheus

import (
	"bufio"
	"io"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of io.prometheus.client (prometheus/client_model
// metrics.proto) that WriteProto writes.
const (
	pbFamilyName   = 1 // MetricFamily.name
	pbFamilyHelp   = 2 // MetricFamily.help
	pbFamilyType   = 3 // MetricFamily.type
	pbFamilyMetric = 4 // MetricFamily.metric
	pbMetricLabel  = 1 // Metric.label
	pbMetricGauge  = 2 // Metric.gauge
	pbMetricCount  = 3 // Metric.counter
	pbLabelName    = 1 // LabelPair.name
	pbLabelValue   = 2 // LabelPair.value
	pbValue        = 1 // Gauge.value, Counter.value
	pbTypeCounter  = 0 // MetricType COUNTER
	pbTypeGauge    = 1 // MetricType GAUGE
)

// valueSize is the size of a Gauge or Counter message: the value field's
// tag (one byte) and a fixed64 double, whatever the value.
const valueSize = 1 + 8

// WriteProto streams every per-target series as length-delimited
// MetricFamily messages (the protobuf exposition format), the same samples
// Collect gives, without materialising them: client_golang's path built
// 200k+ metric structs per scrape at 10k targets and took seconds.
//
// A message's length comes before it, so each family takes two passes over
// the series: one sizes it, one writes it. Sizes cannot change in between:
// labels are fixed, a value is a fixed64 whatever it is, and a sample only
// ever goes from unset to set (success, handshake, rtt), so the second pass
// writes exactly the series the first one found set.
func (s *seriesSet) WriteProto(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	all := s.sorted()
	set := make([]bool, len(all))
	var buf []byte
	var scratch [4]string
	for _, f := range families {
		typ, valueField := uint64(pbTypeGauge), protowire.Number(pbMetricGauge)
		if f.typ == "counter" {
			typ, valueField = pbTypeCounter, pbMetricCount
		}
		names := textLabels[f]
		head := protowire.AppendTag(buf[:0], pbFamilyName, protowire.BytesType)
		head = protowire.AppendString(head, f.name)
		head = protowire.AppendTag(head, pbFamilyHelp, protowire.BytesType)
		head = protowire.AppendString(head, f.help)
		head = protowire.AppendTag(head, pbFamilyType, protowire.VarintType)
		head = protowire.AppendVarint(head, typ)
		size, samples := len(head), 0
		for i, sr := range all {
			set[i] = false
			sr.each(f, &scratch, func(_ float64, lv []string) {
				set[i] = true
				samples++
				size += 1 + protowire.SizeBytes(metricSize(names, lv))
			})
		}
		if samples == 0 {
			continue // as Gather: no family without a sample
		}
		buf = protowire.AppendVarint(head, uint64(size))
		// The length goes first: write it, then the head before it in buf.
		if _, err := bw.Write(buf[len(head):]); err != nil {
			return err
		}
		if _, err := bw.Write(head); err != nil {
			return err
		}
		for i, sr := range all {
			yieldAt(i)
			if !set[i] {
				continue
			}
			var werr error
			sr.each(f, &scratch, func(v float64, lv []string) {
				m := protowire.AppendTag(buf[:0], pbFamilyMetric, protowire.BytesType)
				m = protowire.AppendVarint(m, uint64(metricSize(names, lv)))
				for _, ln := range names {
					val := lv[ln.idx]
					m = protowire.AppendTag(m, pbMetricLabel, protowire.BytesType)
					m = protowire.AppendVarint(m, uint64(labelSize(ln.name, val)))
					m = protowire.AppendTag(m, pbLabelName, protowire.BytesType)
					m = protowire.AppendString(m, ln.name)
					m = protowire.AppendTag(m, pbLabelValue, protowire.BytesType)
					m = protowire.AppendString(m, val)
				}
				m = protowire.AppendTag(m, valueField, protowire.BytesType)
				m = protowire.AppendVarint(m, valueSize)
				m = protowire.AppendTag(m, pbValue, protowire.Fixed64Type)
				m = protowire.AppendFixed64(m, math.Float64bits(v))
				buf = m
				if _, err := bw.Write(m); err != nil && werr == nil {
					werr = err
				}
			})
			if werr != nil {
				return werr
			}
		}
	}
	return bw.Flush()
}

// labelSize is the size of a LabelPair message.
func labelSize(name, value string) int {
	return 1 + protowire.SizeBytes(len(name)) + 1 + protowire.SizeBytes(len(value))
}

// metricSize is the size of a Metric message of one family: its labels
// (in names' order, values from lv) and its Gauge or Counter.
func metricSize(names []struct {
	name string
	idx  int
}, lv []string) int {
	n := 1 + protowire.SizeBytes(valueSize)
	for _, ln := range names {
		n += 1 + protowire.SizeBytes(labelSize(ln.name, lv[ln.idx]))
	}
	return n
}
