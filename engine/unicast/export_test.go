package unicast

// Abandon stops c as if its device vanished: no LEAVE, no more keepalives.
func (c *Client) Abandon() {
	c.mu.Lock()
	select {
	case <-c.done:
	default:
		close(c.done)
	}
	c.mu.Unlock()
	c.conn.Close()
}
