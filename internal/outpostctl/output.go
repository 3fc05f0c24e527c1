package outpostctl

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Output formats, the values of -o/--output.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// jsonOptions renders responses for -o json: the response message exactly,
// indented, without unset fields.
var jsonOptions = protojson.MarshalOptions{Multiline: true, Indent: "  "}

// render writes resp as JSON in json mode, or calls table otherwise.
func render(w io.Writer, format string, resp proto.Message, table func(io.Writer) error) error {
	if format == outputJSON {
		b, err := jsonOptions.Marshal(resp)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	return table(w)
}

// enumName is an enum value for people: the value name without the enum's
// prefix, lower case, '-' for '_' (ORIGIN_TYPE_IP → ip, ROLE_READ_ONLY →
// read-only). The zero value, *_UNSPECIFIED, is "-".
func enumName(e protoreflect.Enum) string {
	if e.Number() == 0 {
		return "-"
	}
	v := e.Descriptor().Values().ByNumber(e.Number())
	if v == nil {
		return strconv.Itoa(int(e.Number()))
	}
	return shortEnumName(e.Descriptor(), v)
}

func shortEnumName(ed protoreflect.EnumDescriptor, v protoreflect.EnumValueDescriptor) string {
	prefix := strings.TrimSuffix(string(ed.Values().ByNumber(0).Name()), "UNSPECIFIED")
	name := strings.TrimPrefix(string(v.Name()), prefix)
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// protoEnum is a generated enum type such as outpostv1.Scope.
type protoEnum interface {
	~int32
	protoreflect.Enum
}

// enumChoices lists the short names of an enum's values, zero value excluded.
func enumChoices(ed protoreflect.EnumDescriptor) []string {
	var out []string
	values := ed.Values()
	for i := range values.Len() {
		if v := values.Get(i); v.Number() != 0 {
			out = append(out, shortEnumName(ed, v))
		}
	}
	return out
}

// parseEnum parses a short enum name (case-insensitive, '_' or '-'), or the
// full value name, into E. what names the value in the error ("--scope").
func parseEnum[E protoEnum](what, s string) (E, error) {
	var zero E
	ed := zero.Descriptor()
	want := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-")
	values := ed.Values()
	for i := range values.Len() {
		v := values.Get(i)
		if v.Number() == 0 {
			continue
		}
		if want == shortEnumName(ed, v) || strings.EqualFold(strings.TrimSpace(s), string(v.Name())) {
			return E(v.Number()), nil
		}
	}
	return zero, fmt.Errorf("invalid %s %q: want %s", what, s, orList(enumChoices(ed)))
}

// orList renders "a, b or c".
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// newEnumFlag returns a flag.Value for an enum with an initial value.
func newEnumFlag[E protoEnum](initial E) *enumValue[E] {
	return &enumValue[E]{value: initial}
}

// enumValue is a pflag.Value holding one enum value.
type enumValue[E protoEnum] struct {
	value E
}

func (f *enumValue[E]) Set(s string) error {
	v, err := parseEnum[E]("value", s)
	if err != nil {
		var zero E
		return fmt.Errorf("want %s", orList(enumChoices(zero.Descriptor())))
	}
	f.value = v
	return nil
}

func (f *enumValue[E]) String() string {
	if f.value == 0 {
		return ""
	}
	return enumName(f.value)
}

func (f *enumValue[E]) Type() string {
	var zero E
	return strings.Join(enumChoices(zero.Descriptor()), "|")
}

// choices is the list shell completion offers.
func (f *enumValue[E]) choices() []string {
	var zero E
	return enumChoices(zero.Descriptor())
}

// timestamp renders a protobuf timestamp as RFC 3339 in UTC, or "-".
func timestamp(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// orDash returns s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// yesNo renders a bool for tables.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// oneLine makes a value safe for a table cell: no tabs or line breaks.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// table writes aligned columns with text/tabwriter.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = orDash(oneLine(c))
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// details writes a "Key:  value" view, one field per line; a field with
// several values continues on lines of its own under the first.
type details struct {
	tw *tabwriter.Writer
}

func newDetails(w io.Writer) *details {
	return &details{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

func (d *details) field(key string, values ...string) {
	if len(values) == 0 {
		values = []string{"-"}
	}
	for i, v := range values {
		k := ""
		if i == 0 {
			k = key + ":"
		}
		fmt.Fprintf(d.tw, "%s\t%s\n", k, orDash(oneLine(v)))
	}
}

func (d *details) flush() error { return d.tw.Flush() }
