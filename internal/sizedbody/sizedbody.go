// Package sizedbody gives the demo origins (make dev's and outpost-origin)
// their sized objects: a path /<n>k.bin or /<n>m.bin is n KiB or n MiB of
// bytes, the origin's random seed repeated, so that a load test's size mix
// (outpost-loadtest --size-mix 1k:80,100k:20, paths /{size}.bin) finds an
// object of every class without files or memory per size.
package sizedbody

import (
	"io"
	"strconv"
	"strings"
)

// MaxBytes is the largest object served: 64 MiB.
const MaxBytes = 64 << 20

// Parse returns the size a label such as "1k", "100k" or "4m" names (n
// KiB or n MiB, n from 1 on, at most MaxBytes), and whether it is one.
func Parse(label string) (int64, bool) {
	if len(label) < 2 || len(label) > 8 {
		return 0, false
	}
	var unit int64
	switch label[len(label)-1] {
	case 'k':
		unit = 1 << 10
	case 'm':
		unit = 1 << 20
	default:
		return 0, false
	}
	digits := label[:len(label)-1]
	if digits[0] == '0' || strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, false // no sign, no leading zero: one spelling per size
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > MaxBytes/unit {
		return 0, false
	}
	return n * unit, true
}

// Path returns the size of a path /<label>.bin, and whether it is one.
func Path(p string) (int64, bool) {
	label, ok := strings.CutSuffix(strings.TrimPrefix(p, "/"), ".bin")
	if !ok || strings.Contains(label, "/") {
		return 0, false
	}
	return Parse(label)
}

// Reader is size bytes of seed repeated, for http.ServeContent (ranges
// included). seed must not be empty.
func Reader(seed []byte, size int64) io.ReadSeeker {
	return io.NewSectionReader(repeat(seed), 0, size)
}

// repeat is seed repeated without end.
type repeat []byte

func (r repeat) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		i := (off + int64(n)) % int64(len(r))
		n += copy(p[n:], r[i:])
	}
	return n, nil
}
