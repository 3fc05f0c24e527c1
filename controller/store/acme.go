package store

// Keys of free certificates (ACME, controller/acme.go). They live in a file
// of their own so that keys.go stays the list of the API's records; the
// layout is documented with the rest in docs/etcd-keys.md.
const (
	acmeAccountKey       = Prefix + "acme/account"           // storage.v1.AcmeAccount
	acmeChallengesPrefix = ConfigPrefix + "acme-challenges/" // <token> → outpost.v1.AcmeChallenge
	acmeElectionPrefix   = Prefix + "election/acme"          // <lease id hex> → the candidate controller
)

// AcmeAccountKey holds the controllers' account with the ACME CA, its key
// sealed.
func AcmeAccountKey() string { return acmeAccountKey }

// AcmeChallengeKey holds the response to a pending HTTP-01 challenge, by
// its token. It is under the config subtree, so every edge node receives it.
func AcmeChallengeKey(token string) string { return acmeChallengesPrefix + token }

// AcmeChallengesPrefix is the prefix of every pending HTTP-01 challenge.
func AcmeChallengesPrefix() string { return acmeChallengesPrefix }

// AcmeElectionPrefix is the etcd election (go.etcd.io/etcd/client/v3/concurrency)
// whose leader is the one controller that obtains and renews free
// certificates. Each candidate holds a key below it, bound to its lease.
func AcmeElectionPrefix() string { return acmeElectionPrefix }
