package cache

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// On-disk entry format, version 1. All integers are big-endian.
//
//	offset size field
//	     0    4 magic "OPDC"
//	     4    2 version (1)
//	     6    2 flags (0; a reader refuses any other value)
//	     8    4 metaLen: length of the metadata
//	    12    8 bodyLen: length of the body
//	    20    4 headCRC: CRC-32C of bytes 0..19 followed by the metadata
//	    24    4 dataCRC: CRC-32C of the metadata followed by the body
//	    28    … metadata (metaLen bytes), then the body (bodyLen bytes)
//
// A file is exactly 28+metaLen+bodyLen bytes long. headCRC lets the
// start-up index trust a file's metadata after reading only its head;
// dataCRC is verified on every read of the whole file, so a torn or
// corrupted file is never served.
//
// The metadata is a protobuf message (encoded with protowire; unknown
// fields are skipped, so later versions may add fields):
//
//	message DiskEntry {
//	  bytes  key            = 1;  // full key (base key, or base + variant)
//	  bytes  base           = 2;  // base key, for purge matchers
//	  fixed64 id            = 3;  // write id: which write of key this file is
//	  int64  status         = 4;
//	  repeated Field header = 5;  // message Field { bytes name = 1; repeated bytes value = 2; }
//	  sint64 stored_sec     = 6;  // Stored, Unix seconds
//	  sint64 initial_age_ns = 7;
//	  sint64 fresh_ns       = 8;
//	  sint64 stale_if_error_ns = 9;
//	  bool   varies         = 10; // the Vary placeholder under a base key
//	  int64  stored_nsec    = 11; // Stored, nanoseconds within the second
//	}
//
// Keys and header values are bytes, not strings: they need not be UTF-8.
const (
	diskMagic     = "OPDC"
	diskVersion   = 1
	diskFixedLen  = 28
	maxDiskMeta   = 16 << 20
	maxDiskBody   = 1 << 40
	maxHeaderRead = diskFixedLen + 64<<10 // first read of a header at start-up
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errCorrupt = errors.New("cache: corrupt disk entry")

// diskRecord is an entry's metadata as stored.
type diskRecord struct {
	key, base                       string
	id                              uint64
	status                          int
	header                          http.Header
	stored                          time.Time
	initialAge, fresh, staleIfError time.Duration
	varies                          bool
}

func recordOf(e *Entry, id uint64) *diskRecord {
	return &diskRecord{key: e.Key, base: e.Base, id: id, status: e.Status, header: e.Header, stored: e.Stored,
		initialAge: e.InitialAge, fresh: e.Fresh, staleIfError: e.StaleIfError, varies: e.varies}
}

func (r *diskRecord) entry(body []byte) *Entry {
	e := &Entry{Base: r.base, Key: r.key, Status: r.status, Header: r.header, Body: body, Stored: r.stored,
		InitialAge: r.initialAge, Fresh: r.fresh, StaleIfError: r.staleIfError, varies: r.varies}
	if !e.varies && e.Header == nil {
		e.Header = http.Header{} // callers Clone and add to it
	}
	return e
}

func (r *diskRecord) marshal() []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, r.key)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, r.base)
	b = protowire.AppendTag(b, 3, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, r.id)
	if r.status != 0 {
		b = protowire.AppendTag(b, 4, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(r.status)))
	}
	names := make([]string, 0, len(r.header))
	for k := range r.header {
		names = append(names, k)
	}
	slices.Sort(names)
	var field []byte
	for _, k := range names {
		field = field[:0]
		field = protowire.AppendTag(field, 1, protowire.BytesType)
		field = protowire.AppendString(field, k)
		for _, v := range r.header[k] {
			field = protowire.AppendTag(field, 2, protowire.BytesType)
			field = protowire.AppendString(field, v)
		}
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, field)
	}
	if !r.stored.IsZero() {
		b = protowire.AppendTag(b, 6, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeZigZag(r.stored.Unix()))
		b = protowire.AppendTag(b, 11, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(r.stored.Nanosecond()))
	}
	for _, d := range []struct {
		num protowire.Number
		v   time.Duration
	}{{7, r.initialAge}, {8, r.fresh}, {9, r.staleIfError}} {
		if d.v != 0 {
			b = protowire.AppendTag(b, d.num, protowire.VarintType)
			b = protowire.AppendVarint(b, protowire.EncodeZigZag(int64(d.v)))
		}
	}
	if r.varies {
		b = protowire.AppendTag(b, 10, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	return b
}

func unmarshalRecord(b []byte) (*diskRecord, error) {
	r := &diskRecord{}
	var sec, nsec int64
	var hasStored bool
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, errCorrupt
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			r.key = string(v)
		case num == 2 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			r.base = string(v)
		case num == 3 && typ == protowire.Fixed64Type:
			r.id, n = protowire.ConsumeFixed64(b)
		case num == 4 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			r.status = int(int64(v))
		case num == 5 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				if r.header == nil {
					r.header = http.Header{}
				}
				if !unmarshalField(v, r.header) {
					return nil, errCorrupt
				}
			}
		case num >= 6 && num <= 11 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			switch num {
			case 6:
				sec, hasStored = protowire.DecodeZigZag(v), true
			case 7:
				r.initialAge = time.Duration(protowire.DecodeZigZag(v))
			case 8:
				r.fresh = time.Duration(protowire.DecodeZigZag(v))
			case 9:
				r.staleIfError = time.Duration(protowire.DecodeZigZag(v))
			case 10:
				r.varies = v != 0
			case 11:
				nsec = int64(v)
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, errCorrupt
		}
		b = b[n:]
	}
	if nsec < 0 || nsec >= 1e9 {
		return nil, errCorrupt
	}
	if hasStored {
		r.stored = time.Unix(sec, nsec)
	}
	if !r.valid() {
		return nil, errCorrupt
	}
	return r, nil
}

func unmarshalField(b []byte, h http.Header) bool {
	var name string
	var values []string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			name = string(v)
		case num == 2 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			values = append(values, string(v))
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	if name == "" {
		return false
	}
	h[name] = append(h[name], values...)
	return true
}

// valid checks what the cache relies on: a key under its base, a
// placeholder only under a base key, non-negative lifetimes.
func (r *diskRecord) valid() bool {
	if r.key == "" || r.base == "" || r.initialAge < 0 || r.fresh < 0 || r.staleIfError < 0 {
		return false
	}
	if r.key != r.base && !strings.HasPrefix(r.key, r.base+"\x00") {
		return false
	}
	if r.varies {
		return r.key == r.base
	}
	return r.status >= 100 && r.status <= 999
}

// encodeHead returns the fixed header and metadata of e's file (the body
// follows them).
func encodeHead(e *Entry, id uint64) ([]byte, error) {
	meta := recordOf(e, id).marshal()
	if len(meta) > maxDiskMeta {
		return nil, errors.New("cache: entry metadata too large for the disk tier")
	}
	b := make([]byte, diskFixedLen, diskFixedLen+len(meta))
	copy(b, diskMagic)
	binary.BigEndian.PutUint16(b[4:], diskVersion)
	binary.BigEndian.PutUint32(b[8:], uint32(len(meta)))
	binary.BigEndian.PutUint64(b[12:], uint64(len(e.Body)))
	b = append(b, meta...)
	binary.BigEndian.PutUint32(b[20:], crc32.Update(crc32.Checksum(b[:20], castagnoli), castagnoli, meta))
	binary.BigEndian.PutUint32(b[24:], crc32.Update(crc32.Checksum(meta, castagnoli), castagnoli, e.Body))
	return b, nil
}

// diskHead is a parsed fixed header.
type diskHead struct {
	metaLen          int
	bodyLen          int64
	headCRC, dataCRC uint32
}

func (h diskHead) size() int64 { return diskFixedLen + int64(h.metaLen) + h.bodyLen }

func parseFixed(b []byte) (diskHead, error) {
	if len(b) < diskFixedLen || string(b[:4]) != diskMagic ||
		binary.BigEndian.Uint16(b[4:]) != diskVersion || binary.BigEndian.Uint16(b[6:]) != 0 {
		return diskHead{}, errCorrupt
	}
	h := diskHead{metaLen: int(binary.BigEndian.Uint32(b[8:])), headCRC: binary.BigEndian.Uint32(b[20:]),
		dataCRC: binary.BigEndian.Uint32(b[24:])}
	bl := binary.BigEndian.Uint64(b[12:])
	if h.metaLen > maxDiskMeta || bl > maxDiskBody {
		return diskHead{}, errCorrupt
	}
	h.bodyLen = int64(bl)
	return h, nil
}

// parseHead parses the fixed header and metadata at the start of b, for a
// file of fileSize bytes, verifying the header checksum only (the body is
// not read).
func parseHead(b []byte, fileSize int64) (*diskRecord, diskHead, error) {
	h, err := parseFixed(b)
	if err != nil {
		return nil, h, err
	}
	if h.size() != fileSize || len(b) < diskFixedLen+h.metaLen {
		return nil, h, errCorrupt
	}
	meta := b[diskFixedLen : diskFixedLen+h.metaLen]
	if crc32.Update(crc32.Checksum(b[:20], castagnoli), castagnoli, meta) != h.headCRC {
		return nil, h, errCorrupt
	}
	r, err := unmarshalRecord(meta)
	return r, h, err
}

// parseEntry parses a whole file, verifying both checksums. The entry's
// body aliases b.
func parseEntry(b []byte) (*diskRecord, *Entry, error) {
	r, h, err := parseHead(b, int64(len(b)))
	if err != nil {
		return nil, nil, err
	}
	if crc32.Checksum(b[diskFixedLen:], castagnoli) != h.dataCRC {
		return nil, nil, errCorrupt
	}
	body := b[diskFixedLen+h.metaLen:]
	if len(body) == 0 {
		body = nil
	}
	return r, r.entry(body), nil
}
