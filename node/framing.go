package node

import (
	"bytes"
	"strconv"
	"sync"
)

// framing follows the HTTP/1 byte stream of one client connection, as it is
// read, far enough to see each request's header block exactly as sent. Go's
// server resolves some ambiguous framing silently (with both Content-Length
// and Transfer-Encoding it drops Content-Length); an edge must refuse such
// requests instead, because a peer on the path may read them differently
// (request smuggling). The handler asks Verdict before serving request k.
//
// It tracks request boundaries with the same rules as the server
// (Content-Length, or chunked coding), so it stays in step for every
// request the server accepts. When it cannot follow the stream any more
// (an upgrade, a coding it does not know, an oversized head) it stops and
// judges nothing further; the server refuses such streams on its own.
type framing struct {
	mu      sync.Mutex
	state   int
	line    []byte
	headLen int
	cl, te  int
	chunked bool
	upgrade bool
	remain  int64
	request int // index of the request being read
	bad     string
	badAt   int
}

const (
	fsHead = iota
	fsBody
	fsChunkSize
	fsChunkData
	fsChunkEnd
	fsTrailer
	fsOff
)

// maxTrackedHead is how much header the tracker reads before giving up; the
// server refuses heads over its own limit (431) anyway.
const maxTrackedHead = maxHeaderBytes + 4096

// Verdict returns why request k (0-based on the connection) must be
// refused, or "".
func (f *framing) Verdict(k int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bad != "" && f.badAt <= k {
		return f.bad
	}
	return ""
}

// Feed consumes bytes in the order the server reads them.
func (f *framing) Feed(p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(p) > 0 && f.state != fsOff {
		switch f.state {
		case fsBody, fsChunkData:
			n := int64(len(p))
			if n > f.remain {
				n = f.remain
			}
			f.remain -= n
			p = p[n:]
			if f.remain == 0 {
				if f.state == fsBody {
					f.next()
				} else {
					f.state = fsChunkEnd
				}
			}
		default:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				f.line = append(f.line, p...)
				p = nil
				if len(f.line) > maxTrackedHead {
					f.state = fsOff
				}
				continue
			}
			f.line = append(f.line, p[:i]...)
			p = p[i+1:]
			line := bytes.TrimSuffix(f.line, []byte("\r"))
			f.line = f.line[:0]
			f.onLine(line)
		}
	}
}

func (f *framing) onLine(line []byte) {
	switch f.state {
	case fsHead:
		f.headLen += len(line) + 2
		if f.headLen > maxTrackedHead {
			f.state = fsOff
			return
		}
		if len(line) == 0 {
			if f.headLen == 2 {
				f.headLen = 0 // blank lines before a request line are allowed
				return
			}
			f.endOfHead()
			return
		}
		if line[0] == ' ' || line[0] == '\t' {
			f.flag("obsolete header line folding")
			return
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return // the request line, or garbage the server will refuse
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			f.cl++
			if n, err := strconv.ParseInt(string(bytes.TrimSpace(value)), 10, 64); err == nil && n >= 0 {
				f.remain = n
			} else {
				f.remain = -1
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			f.te++
			codings := bytes.Split(value, []byte(","))
			last := bytes.TrimSpace(codings[len(codings)-1])
			f.chunked = bytes.EqualFold(last, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Upgrade")):
			f.upgrade = true
		case bytes.ContainsAny(name, " \t"):
			f.flag("white space in a header name")
		}
	case fsChunkSize:
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
		if err != nil || n < 0 {
			f.state = fsOff
			return
		}
		if n == 0 {
			f.state = fsTrailer
			return
		}
		f.remain, f.state = n, fsChunkData
	case fsChunkEnd:
		if len(line) != 0 {
			f.state = fsOff
			return
		}
		f.state = fsChunkSize
	case fsTrailer:
		if len(line) == 0 {
			f.next()
		}
	}
}

func (f *framing) endOfHead() {
	switch {
	case f.cl > 0 && f.te > 0:
		f.flag("both Content-Length and Transfer-Encoding")
	case f.cl > 1:
		f.flag("duplicate Content-Length")
	case f.te > 1:
		f.flag("duplicate Transfer-Encoding")
	}
	switch {
	case f.state == fsOff:
	case f.upgrade:
		f.state = fsOff // the stream stops being HTTP/1
	case f.te > 0 && f.chunked:
		f.state = fsChunkSize
	case f.te > 0 || f.remain < 0:
		f.state = fsOff
	case f.cl == 1 && f.remain > 0:
		f.state = fsBody
	default:
		f.next()
	}
}

// next resets for the following request.
func (f *framing) next() {
	f.request++
	f.state, f.headLen, f.cl, f.te, f.chunked, f.upgrade, f.remain = fsHead, 0, 0, 0, false, false, 0
}

func (f *framing) flag(reason string) {
	if f.bad == "" {
		f.bad, f.badAt = reason, f.request
	}
	// Boundaries are ambiguous from here on: stop following. The connection
	// is closed after the refused request.
	f.state = fsOff
}
