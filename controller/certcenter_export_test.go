package controller

// SetBeforeCertCommit makes every DeployCertificate and RenewCertificate
// call f(op) ("deploy" or "renew") after its reads and before its commit,
// until the returned function restores the previous hook. Tests only.
func SetBeforeCertCommit(f func(op string)) (restore func()) {
	var p *func(string)
	if f != nil {
		p = &f
	}
	prev := beforeCertCommit.Swap(p)
	return func() { beforeCertCommit.Store(prev) }
}
