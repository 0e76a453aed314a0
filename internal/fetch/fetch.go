// Package fetch makes the HTTP requests every client of the origin makes
// (the edge's bundle poller, the device's session and licence client, the
// publisher), with one reading of status codes and one bound on what is
// read.
package fetch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
)

// Do makes one bodiless request, with "Authorization: Bearer token" when
// token is not empty, and returns the body of a 200 (at most limit bytes),
// nil for a 204, and an error naming the request and the status for
// anything else.
func Do(ctx context.Context, c *http.Client, method, url, token string, limit int) ([]byte, error) {
	body, _, err := DoHeader(ctx, c, method, url, token, limit)
	return body, err
}

// DoHeader is Do, also returning the response's header.
func DoHeader(ctx context.Context, c *http.Client, method, url, token string, limit int) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(c, req, limit)
}

// Post sends body with contentType and reads the answer as Do does, a 201
// Created counting as a 200.
func Post(ctx context.Context, c *http.Client, url, contentType string, body []byte, limit int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	out, _, err := send(c, req, limit)
	return out, err
}

func send(c *http.Client, req *http.Request, limit int) ([]byte, http.Header, error) {
	method, url := req.Method, req.URL.String()
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil, resp.Header, nil
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated:
		return nil, nil, &StatusError{Code: resp.StatusCode, msg: fmt.Sprintf("%s %s: %s: %s", method, url, resp.Status, firstLine(out))}
	case len(out) > limit:
		return nil, nil, fmt.Errorf("%s %s: response over %d bytes", method, url, limit)
	}
	return out, resp.Header, nil
}

// StatusError is an answer other than 200, 201 or 204.
type StatusError struct {
	Code int // the HTTP status
	msg  string
}

func (e *StatusError) Error() string { return e.msg }

// firstLine is the start of an error body, enough to say why.
func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' || i == 200 {
			return string(b[:i])
		}
	}
	return string(b)
}
