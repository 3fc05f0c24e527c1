package controller

// SetRewrapHook makes f run before each re-wrap transaction of c commits,
// with the keys it writes, so that a test can change them in between; nil
// removes the hook.
func SetRewrapHook(c *Controller, f func(keys []string)) {
	if f == nil {
		c.rewrapHook.Store(nil)
		return
	}
	c.rewrapHook.Store(&f)
}
