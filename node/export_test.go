package node

// SetFastPath switches the HTTP/1.1 cache-hit fast path on or off for new
// connections, so that tests can compare its answers with net/http's.
func SetFastPath(n *Node, on bool) { n.fastPath.Store(on) }
