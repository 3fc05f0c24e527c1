package node

// SetFastPath switches the HTTP/1.1 cache-hit fast path on or off for new
// connections, so that tests can compare its answers with net/http's.
func SetFastPath(n *Node, on bool) { n.fastPath.Store(on) }

// DiskCacheHeld reports whether n holds what its disk cache kept from
// before the restart (Config.CacheSyncWait).
func DiskCacheHeld(n *Node) bool { return n.cache.HoldingPrevious() }
