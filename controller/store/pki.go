package store

// Keys of the cluster PKI (controller/pki.go): the CA, one-time join
// tokens and the member certificates issued to edge nodes and schedulers.
// The layout is documented with the rest in docs/etcd-keys.md.
const (
	clusterCAKey      = Prefix + "pki/ca"            // storage.v1.ClusterCa
	joinTokensPrefix  = Prefix + "pki/join-tokens/"  // <sha256(secret) hex> → storage.v1.StoredJoinToken, lease-bound
	memberCertsPrefix = Prefix + "pki/member-certs/" // <serial hex> → outpost.v1.MemberCertificate
)

// ClusterCAKey holds the cluster CA: its certificate and its sealed key.
func ClusterCAKey() string { return clusterCAKey }

// JoinTokenKey holds a join token by the SHA-256 hex of its secret.
func JoinTokenKey(secretHash string) string { return joinTokensPrefix + secretHash }

// JoinTokensPrefix is the prefix of every join token.
func JoinTokensPrefix() string { return joinTokensPrefix }

// MemberCertKey records a member certificate by its serial (lowercase hex).
func MemberCertKey(serial string) string { return memberCertsPrefix + serial }

// MemberCertsPrefix is the prefix of every member certificate record.
func MemberCertsPrefix() string { return memberCertsPrefix }
