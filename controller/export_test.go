package controller

import (
	"crypto/x509"
	"encoding/pem"
)

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

// CAKeyPEM returns the cluster CA's private key, PKCS#8 PEM, so that a
// test can look for it where it must not be.
func CAKeyPEM(c *Controller) string {
	der, err := x509.MarshalPKCS8PrivateKey(c.ca.key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}
