package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/embargo-live/embargo/internal/etcdtest"
	"github.com/embargo-live/embargo/internal/realtime"
	"github.com/embargo-live/embargo/internal/syncbuf"
	"github.com/embargo-live/embargo/internal/wait"
)

// TestStoreFlagErrors: a -store the origin cannot use is refused on one
// line naming the fix, before anything is created.
func TestStoreFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-store", "zookeeper:x", "-tokens", "t"}, "want etcd:https://host:2379"},
		{[]string{"-store", "etcd:https://127.0.0.1:1"}, "needs -jwks"},
		{[]string{"-store", "etcd:https://127.0.0.1:1", "-tokens", "t"}, "needs -etcd-ca, -etcd-cert and -etcd-key"},
		{[]string{"-store", "etcd:127.0.0.1:2379", "-tokens", "t"}, "want https://host:port"},
		{[]string{"-store", "etcd:https://127.0.0.1:1,http://127.0.0.1:2", "-tokens", "t"}, "mixes https:// and http://"},
	} {
		out := &syncbuf.Buffer{}
		args := append([]string{"origin", "-state", t.TempDir() + "/state", "-listen", "127.0.0.1:0", "-assume-synced", "1ms"}, c.args...)
		if code := run(context.Background(), args, out, out); code == 0 || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, %q; want an error with %q", c.args, code, out.String(), c.want)
		}
	}
}

// TestOriginReplicas: two origins given one etcd cluster are one origin:
// the second signs with the key the first stored and issues the streams
// the first created; a cluster reached over plain http is warned about.
func TestOriginReplicas(t *testing.T) {
	realtime.Exclusive(t)
	c := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store := "etcd:" + strings.Join(c.Endpoints, ",")
	a := startOrigin(t, ctx, "-store", store, "-log", "info")
	b := startOrigin(t, ctx, "-store", store, "-log", "info", "-metrics", "127.0.0.1:0")
	keyID := regexp.MustCompile(`signing key id ([0-9a-f]+)`)
	ka, kb := keyID.FindStringSubmatch(a.out.String()), keyID.FindStringSubmatch(b.out.String())
	if ka == nil || kb == nil || ka[1] != kb[1] {
		t.Fatalf("replicas' signing keys: %q and %q, want one", ka, kb)
	}
	// The replica's readiness names the shared store; its metrics count
	// lost races.
	m := regexp.MustCompile(`addr=(http://[0-9.:]+)/metrics`).FindStringSubmatch(b.out.String())
	if m == nil {
		t.Fatalf("no metrics address in:\n%s", b.out.String())
	}
	wait.For(t, 10*time.Second, "the second replica ready with its store answering", func() bool {
		code, body := httpGet(m[1] + "/readyz")
		return code == http.StatusOK && strings.Contains(body, "store: ok: answering")
	})
	if _, body := httpGet(m[1] + "/metrics"); !strings.Contains(body, "embargo_origin_periods_lost_race_total") {
		t.Errorf("no lost-race counter in the metrics")
	}
	if !strings.Contains(a.out.String(), "etcd over plain http") {
		t.Errorf("no warning about plain-http etcd:\n%s", a.out.String())
	}
	if !strings.Contains(a.out.String(), "created stream") || strings.Contains(b.out.String(), "created stream") || !strings.Contains(b.out.String(), "state "+store) {
		t.Errorf("second replica's output:\n%s", b.out.String())
	}
	cancel()
	for _, l := range []*originLab{a, b} {
		if code := <-l.done; code != 0 {
			t.Errorf("origin exit %d:\n%s", code, l.out.String())
		}
	}
}

// TestEdgeFailsOver: an edge given a dead origin replica first and a live
// one second gets its bundles from the second, says so on /readyz with
// the reason, and counts the move.
func TestEdgeFailsOver(t *testing.T) {
	realtime.Exclusive(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lab := startOrigin(t, ctx, "-period", "300ms", "-lead", "1s", "-present", "300ms")
	dead := lab.addr(3) // nothing listens there
	metricsAddr := lab.addr(2)
	out, done := &syncbuf.Buffer{}, make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"edge", "-origin", "https://" + dead + ",https://" + lab.addr(0), "-certs", filepath.Join(lab.certs, "edge"),
			"-unicast", lab.addr(1), "-metrics", metricsAddr, "-assume-synced", "1ms", "-log", "warn"}, out, out)
	}()
	var body string
	wait.For(t, 30*time.Second, "the edge ready through the second replica", func() bool {
		var code int
		code, body = httpGet("http://" + metricsAddr + "/readyz")
		return code == http.StatusOK
	})
	if !strings.Contains(body, "origin: ok: using https://"+lab.addr(0)+" of 2 replicas; failovers: 1, the last after https://"+dead+" failed: ") {
		t.Errorf("/readyz:\n%s", body)
	}
	if _, m := httpGet("http://" + metricsAddr + "/metrics"); !strings.Contains(m, "embargo_edge_origin_failovers_total 1\n") {
		t.Errorf("metrics without one failover:\n%s", m)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("edge exit %d:\n%s", code, out.String())
	}
	<-lab.done
}

// TestOriginsConfig: an edge's replicas come from flags (repeated or
// comma-separated), EMBARGO_ORIGIN (white space between) or the file (a
// list), and -print-config lists them.
func TestOriginsConfig(t *testing.T) {
	got := printedConfig(t, "edge", "-origin", "https://o1:8443,https://o2:8443", "-origin", "https://o3:8443/")
	if want := `["https://o1:8443", "https://o2:8443", "https://o3:8443"] # flag -origin`; got["origin"] != want {
		t.Errorf("origin = %s, want %s", got["origin"], want)
	}
	t.Setenv("EMBARGO_ORIGIN", "https://o1:8443 https://o2:8443")
	if got := printedConfig(t, "edge"); got["origin"] != `["https://o1:8443", "https://o2:8443"] # env EMBARGO_ORIGIN` {
		t.Errorf("from the environment: origin = %s", got["origin"])
	}
	os.Unsetenv("EMBARGO_ORIGIN") // t.Setenv restores it at the end
	path := writeConfig(t, `origin = ["https://o1:8443", "https://o2:8443"]`+"\n")
	if got := printedConfig(t, "edge", "-config", path); !strings.HasPrefix(got["origin"], `["https://o1:8443", "https://o2:8443"]`) {
		t.Errorf("from the file: origin = %s", got["origin"])
	}
	path = writeConfig(t, `store = "etcd:https://e1:2379,https://e2:2379"`+"\n"+`etcd-ca = "/etc/embargo/etcd-ca.pem"`+"\n")
	if got := printedConfig(t, "origin", "-config", path); !strings.HasPrefix(got["store"], `"etcd:https://e1:2379,https://e2:2379"`) || !strings.HasPrefix(got["etcd-ca"], `"/etc/embargo/etcd-ca.pem"`) {
		t.Errorf("origin from the file: store = %s, etcd-ca = %s", got["store"], got["etcd-ca"])
	}
}
