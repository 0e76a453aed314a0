// Package subscribertest is the in-memory double of a subscriber Client's
// transport (subscriber.Conn): a pipe whose far end the test plays as the
// edge, reading what the client wrote and delivering datagrams to it. It
// blocks only on channels, so a Client over it runs in a testing/synctest
// bubble, its handshake retries, keepalives and silence watchdog in
// virtual time.
package subscribertest
