package controller

import (
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

const eventsDomain = "assets.example.com"

func eventBody(records ...[2]string) []byte {
	type rec struct {
		EventName string `json:"eventName"`
		S3        struct {
			Object struct {
				Key string `json:"key"`
			} `json:"object"`
		} `json:"s3"`
	}
	var doc struct {
		Records []rec `json:"Records"`
	}
	for _, r := range records {
		var x rec
		x.EventName, x.S3.Object.Key = r[0], r[1]
		doc.Records = append(doc.Records, x)
	}
	b, _ := json.Marshal(doc)
	return b
}

func TestParseBucketEvents(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    []byte
		want    []string
		skipped int
	}{
		{"AWS names", eventBody(
			[2]string{"ObjectCreated:Put", "a.jpg"},
			[2]string{"ObjectCreated:Post", "b.jpg"},
			[2]string{"ObjectCreated:Copy", "c.jpg"},
			[2]string{"ObjectCreated:CompleteMultipartUpload", "d.jpg"},
			[2]string{"ObjectRemoved:Delete", "e.jpg"},
			[2]string{"ObjectRemoved:DeleteMarkerCreated", "f.jpg"},
		), []string{"/a.jpg", "/b.jpg", "/c.jpg", "/d.jpg", "/e.jpg", "/f.jpg"}, 0},
		{"MinIO and OSS names", eventBody(
			[2]string{"s3:ObjectCreated:Put", "a.jpg"},
			[2]string{"s3:ObjectRemoved:Delete", "b.jpg"},
			[2]string{"ObjectCreated:PutObject", "c.jpg"},
		), []string{"/a.jpg", "/b.jpg", "/c.jpg"}, 0},
		{"other events", eventBody(
			[2]string{"s3:TestEvent", ""},
			[2]string{"s3:ObjectAccessed:Get", "a.jpg"},
			[2]string{"ObjectRestore:Post", "a.jpg"},
			[2]string{"s3:Replication:OperationFailedReplication", "a.jpg"},
			[2]string{"objectcreated:put", "a.jpg"},
			[2]string{"ObjectCreated", "a.jpg"},
		), nil, 0},
		{"escaping", eventBody(
			[2]string{"ObjectCreated:Put", "dir/a+b%2Bc.jpg"},
			[2]string{"ObjectCreated:Put", "%E4%BD%A0%E5%A5%BD.txt"},
			[2]string{"ObjectCreated:Put", "q%3Fx%3D1%23frag"},
			[2]string{"ObjectCreated:Put", "50%25+off/%22quoted%22%3Cb%3E"},
			[2]string{"ObjectCreated:Put", "a%2F%2Fb/..%2Fc"},
			[2]string{"ObjectCreated:Put", "tab%09nul%00"},
			[2]string{"ObjectCreated:Put", "%2Fleading"},
		), []string{"/dir/a%20b+c.jpg", "/%E4%BD%A0%E5%A5%BD.txt", "/q%3Fx=1%23frag", "/50%25%20off/%22quoted%22%3Cb%3E",
			"/a//b/../c", "/tab%09nul%00", "//leading"}, 0},
		{"bad keys skipped", eventBody(
			[2]string{"ObjectCreated:Put", "bad%zz"},
			[2]string{"ObjectCreated:Put", ""},
			[2]string{"ObjectCreated:Put", strings.Repeat("k", 1025)},
			[2]string{"ObjectCreated:Put", strings.Repeat("k", 1024)},
		), []string{"/" + strings.Repeat("k", 1024)}, 3},
		{"duplicates", eventBody(
			[2]string{"ObjectCreated:Put", "a+b"},
			[2]string{"ObjectRemoved:Delete", "a%20b"},
			[2]string{"ObjectCreated:Put", "c"},
		), []string{"/a%20b", "/c"}, 0},
		{"AWS test event", []byte(`{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"assets"}`), nil, 0},
		{"MinIO shape", []byte(`{"EventName":"s3:ObjectCreated:Put","Key":"assets/a b.txt","Records":[{"eventVersion":"2.0","eventSource":"minio:s3",
			"eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"assets"},"object":{"key":"a+b.txt","size":5,"userMetadata":{"content-type":"text/plain"}}},
			"source":{"host":"127.0.0.1","userAgent":"MinIO"}}]}`), []string{"/a%20b.txt"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped, err := parseBucketEvents(eventsDomain, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, p := range tc.want {
				want = append(want, "http://"+eventsDomain+p)
			}
			if !slices.Equal(got, want) || skipped != tc.skipped {
				t.Fatalf("got %q (%d skipped), want %q (%d skipped)", got, skipped, want, tc.skipped)
			}
		})
	}

	for _, bad := range []string{``, `[]`, `{"Records":{}}`, `{"Records":[1]}`, `{"Records":[{"eventName":1}]}`, `{} {}`, `{"Records":[{"s3":{"object":{"key":7}}}]}`} {
		if _, _, err := parseBucketEvents(eventsDomain, []byte(bad)); err == nil || errors.Is(err, errTooManyRecords) {
			t.Errorf("%q: err %v, want a JSON error", bad, err)
		}
	}
	many := make([][2]string, maxBucketEventRecords+1)
	for i := range many {
		many[i] = [2]string{"ObjectCreated:Put", "k"}
	}
	if _, _, err := parseBucketEvents(eventsDomain, eventBody(many...)); !errors.Is(err, errTooManyRecords) {
		t.Fatalf("%d records: %v", len(many), err)
	}
}

func TestBucketEventsSecret(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer obk_x": "obk_x", "bearer  obk_x ": "obk_x", "BEARER obk_x": "obk_x", "obk_x": "obk_x",
		"": "", "Bearer": "", "Bearer ": "", "Basic obk_x": "", "Token obk_x": "", "opt_x": "",
	} {
		got, ok := bucketEventsSecret(in)
		if ok != (want != "") || ok && got != want {
			t.Errorf("bucketEventsSecret(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestSecondsToNextUTCDay(t *testing.T) {
	for now, want := range map[time.Time]int{
		time.Date(2024, 5, 1, 23, 59, 30, 0, time.UTC):                     30,
		time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC):                        86400,
		time.Date(2024, 12, 31, 23, 0, 0, 0, time.FixedZone("x", 3600)):    3600 * 2,
		time.Date(2024, 5, 1, 23, 59, 59, 999_999_999, time.UTC):           1,
		time.Date(2024, 2, 28, 12, 0, 0, 0, time.FixedZone("y", -12*3600)): 86400,
	} {
		if got := secondsToNextUTCDay(now); got != want {
			t.Errorf("secondsToNextUTCDay(%v) = %d, want %d", now, got, want)
		}
	}
}

// FuzzParseBucketEvents: the parser never panics, and every URL it returns
// is on the domain and is one RefreshObjects accepts unchanged (so the
// endpoint never fails on what it built). A key from an event comes back
// from the URL's path intact.
func FuzzParseBucketEvents(f *testing.F) {
	f.Add(eventBody([2]string{"ObjectCreated:Put", "images/summer+holiday%2B2024.jpg"}, [2]string{"s3:TestEvent", ""}), "r%C3%A9sum%C3%A9.pdf")
	f.Add([]byte(`{"Records":[{"eventName":"s3:ObjectRemoved:Delete","s3":{"object":{"key":"%zz"}}}]}`), "a%2F%2F..%2F%3F%23")
	f.Add([]byte(`{"Service":"Amazon S3","Event":"s3:TestEvent"}`), "+")
	f.Add([]byte(`{"Records":null}`), "%00%FF%C0")
	f.Add([]byte(`{"records":[{"EVENTNAME":"ObjectCreated:Put","S3":{"Object":{"Key":"x"}}}]}`), "\x00\xff")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		check := func(urls []string) {
			for _, u := range urls {
				if !strings.HasPrefix(u, "http://"+eventsDomain+"/") {
					t.Fatalf("URL %q is not on %s", u, eventsDomain)
				}
				e, host, err := normalizeEntry(outpostv1.RefreshType_REFRESH_TYPE_FILE, u)
				if err != nil || e != u || host != eventsDomain {
					t.Fatalf("URL %q: normalised to %q on %q, %v", u, e, host, err)
				}
			}
		}
		urls, _, err := parseBucketEvents(eventsDomain, body)
		if err == nil {
			check(urls)
		}
		urls, skipped, err := parseBucketEvents(eventsDomain, eventBody([2]string{"ObjectCreated:Put", key}))
		if err != nil {
			t.Fatal(err)
		}
		check(urls)
		if !utf8.ValidString(key) {
			return // JSON carries only UTF-8: json.Marshal replaced the invalid bytes
		}
		decoded, derr := url.QueryUnescape(key)
		if derr != nil || decoded == "" || len(decoded) > maxObjectKeyBytes {
			if len(urls) != 0 || skipped != 1 {
				t.Fatalf("bad key %q: urls %q, skipped %d", key, urls, skipped)
			}
			return
		}
		if len(urls) != 1 {
			t.Fatalf("key %q: urls %q", key, urls)
		}
		pu, err := url.Parse(urls[0])
		if err != nil || pu.Path != "/"+decoded || pu.RawQuery != "" || pu.Fragment != "" {
			t.Fatalf("key %q: URL %q parses to path %q query %q fragment %q (%v)", key, urls[0], pu.Path, pu.RawQuery, pu.Fragment, err)
		}
	})
}
