package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/embargo-live/embargo/engine/keyserver"
	"github.com/embargo-live/embargo/internal/fetch"
	"github.com/embargo-live/embargo/ptp"
)

func runPublish(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlags("publish", `Submit a resource (an odds snapshot, a manifest unlock; up to 65364 bytes) to the origin for
release on a resource stream at an instant, over mutual TLS with a publisher certificate. The
origin stores it, edges carousel it from one lead before, and release it at that instant, never
earlier; receivers print its bytes ('embargo recv -json' as hex).`, stdout)
	originURLs := &originsFlag{name: "origin"}
	fs.Var(originURLs, "origin", "the origin's base URL (default https://127.0.0.1:8443); repeatable or comma-separated for its replicas, failed over on no connection, a timeout or a 5xx (a resource a failed replica stored is then refused as a duplicate, 409)")
	certs := fs.String("certs", "embargo-certs/publisher", "directory with ca.pem and publisher.pem/publisher.key (see 'embargo certs')")
	stream := fs.Uint("stream", 100, "the resource stream (see 'embargo origin -resource-streams')")
	file := fs.String("file", "-", "the resource: a file, or - for standard input")
	at := fs.String("at", "", "release instant, RFC 3339 UTC (e.g. 2027-01-15T20:45:00Z)")
	in := fs.Duration("in", 0, "release this long from now, instead of -at")
	tai := fs.Duration("tai-offset", time.Duration(ptp.DefaultTAIOffset), "TAI − UTC, to turn the instant into TAI")
	if err := parse(fs, args); err != nil {
		return err
	}
	var when time.Time
	switch {
	case *at != "" && *in != 0, *at == "" && *in <= 0:
		return errors.New("give the release instant as -at or -in, one of them")
	case *at != "":
		t, err := time.Parse(time.RFC3339Nano, *at)
		if err != nil {
			return fmt.Errorf("-at %q: want RFC 3339, such as 2027-01-15T20:45:00Z", *at)
		}
		when = t
	default:
		when = time.Now().Add(*in)
	}
	if *stream > 1<<32-1 {
		return fmt.Errorf("-stream %d out of range", *stream)
	}
	var payload []byte
	var err error
	if *file == "-" {
		payload, err = io.ReadAll(io.LimitReader(os.Stdin, keyserver.MaxResource+1))
	} else {
		payload, err = os.ReadFile(*file)
	}
	if err != nil {
		return err
	}
	_, client, err := originClient(*certs, publisherCert)
	if err != nil {
		return err
	}
	releaseAt := ptp.TAIOffset(*tai).FromTime(when)
	if len(originURLs.urls) == 0 {
		originURLs.urls = []string{"https://127.0.0.1:8443"}
	}
	path := fmt.Sprintf("/v1/streams/%d/resources?releaseAt=%d", *stream, releaseAt)
	body, err := fetch.NewOrigins(originURLs.urls...).Post(ctx, client, path, "application/octet-stream", payload, 4096)
	if err != nil {
		return err
	}
	var p keyserver.Published
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("origin's answer: %w", err)
	}
	fmt.Fprintf(stdout, "published %d bytes as stream %d period %d, released at %s (TAI %d)\n",
		p.Bytes, p.Stream, p.Period, ptp.TAIOffset(*tai).ToTime(p.ReleaseAt).UTC().Format(time.RFC3339Nano), p.ReleaseAt)
	return nil
}
