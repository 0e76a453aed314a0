// Package memhttp is the test double for the HTTP seam between the
// origin and its clients: a RoundTripper that serves each request with an
// http.Handler in memory. No socket is opened, so a client and the real
// handler can run together inside a testing/synctest bubble. The TLS
// handshake itself is what the real-HTTPS tests are for.
package memhttp

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
)

// Transport serves every request with Handler, as if it had arrived over
// a connection from RemoteAddr with TLS state TLS.
type Transport struct {
	Handler http.Handler
	// TLS is the connection state the handler sees, such as a verified
	// client certificate chain; nil for plain HTTP.
	TLS *tls.ConnectionState
	// RemoteAddr is the client address the handler sees; empty means
	// 192.0.2.1:40000.
	RemoteAddr string
}

// RoundTrip implements http.RoundTripper. The response is complete when
// it returns: a handler that waits makes RoundTrip wait.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	in := r.Clone(r.Context())
	in.RemoteAddr = t.RemoteAddr
	if in.RemoteAddr == "" {
		in.RemoteAddr = "192.0.2.1:40000"
	}
	in.TLS = t.TLS
	in.RequestURI = r.URL.RequestURI()
	if in.Body == nil {
		in.Body = http.NoBody // as a server gives a bodiless request
	}
	rec := httptest.NewRecorder()
	t.Handler.ServeHTTP(rec, in)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// Client is an http.Client whose requests h serves in memory.
func Client(h http.Handler) *http.Client {
	return &http.Client{Transport: &Transport{Handler: h}}
}
