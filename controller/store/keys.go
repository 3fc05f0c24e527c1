package store

import "strings"

// Prefix is the root of every key Outpost keeps in etcd. docs/etcd-keys.md
// documents the layout below it; keep the two in step.
const Prefix = "/outpost/"

// ConfigPrefix holds everything edge nodes receive through the config
// stream; the controllers watch it and nothing else.
const ConfigPrefix = Prefix + "config/"

// Key prefixes. Values are protojson of the message named beside each.
const (
	accountsPrefix       = Prefix + "accounts/"                    // <id> → outpost.v1.Account
	tokensPrefix         = Prefix + "tokens/"                      // <sha256(secret) hex> → storage.v1.StoredToken
	tokenIDsPrefix       = Prefix + "token-ids/"                   // <token id> → sha256 hex of its secret
	domainsPrefix        = ConfigPrefix + "domains/"               // <name> → outpost.v1.Domain
	certsPrefix          = ConfigPrefix + "certs/"                 // <id> → storage.v1.StoredCertificate
	accountDomainsPrefix = Prefix + "index/account-domains/"       // <account>/<name> → ""
	accountDomainsGuard  = Prefix + "index/account-domains-guard/" // <account> → "", rewritten by every change to the index
	accountCertsPrefix   = Prefix + "index/account-certs/"         // <account>/<id> → ""
	certDomainsPrefix    = Prefix + "index/cert-domains/"          // <cert id>/<domain> → ""
	nodesPrefix          = Prefix + "nodes/"                       // <name> → storage.v1.NodeRecord
	nodeStatePrefix      = ConfigPrefix + "node-state/"            // <name> → storage.v1.NodeState
	nodeSessionsPrefix   = Prefix + "node-sessions/"               // <name> → ID of the stream, bound to its controller's lease
	tasksPrefix          = Prefix + "tasks/"                       // <task id> → storage.v1.StoredTask
	accountTasksPrefix   = Prefix + "index/account-tasks/"         // <account>/<task id> → ""
	taskProgressPrefix   = Prefix + "task-progress/"               // <task id>/<node> → storage.v1.TaskProgress
	quotaUsagePrefix     = Prefix + "quota-usage/"                 // <account>/<YYYY-MM-DD> → storage.v1.ContentQuotaUsage
	purgesPrefix         = ConfigPrefix + "purges/"                // <task id> → outpost.v1.Purge
	prefetchesPrefix     = ConfigPrefix + "prefetches/"            // <task id> → outpost.v1.Prefetch
	purgeFloorKey        = ConfigPrefix + "purge-floor"            // raw decimal revision, only ever raised
	autoRefreshPrefix    = Prefix + "auto-refresh/"                // <domain> → sha256 hex of its bucket-events secret
	gossipKeyringKey     = ConfigPrefix + "gossip-keyring"         // storage.v1.StoredGossipKeyring
	csrsPrefix           = Prefix + "csrs/"                        // <csr id> → storage.v1.StoredCsr
	accountCsrsPrefix    = Prefix + "index/account-csrs/"          // <account>/<csr id> → ""
)

// AccountKey is the key of an account.
func AccountKey(id string) string { return accountsPrefix + id }

// AccountsPrefix is the prefix of every account.
func AccountsPrefix() string { return accountsPrefix }

// TokenKey is the key of a token, by the hex SHA-256 of its secret.
func TokenKey(secretHash string) string { return tokensPrefix + secretHash }

// TokensPrefix is the prefix of every token.
func TokensPrefix() string { return tokensPrefix }

// TokenIDKey maps a token ID to its secret hash.
func TokenIDKey(id string) string { return tokenIDsPrefix + id }

// DomainKey is the key of an accelerated domain.
func DomainKey(name string) string { return domainsPrefix + name }

// DomainsPrefix is the prefix of every domain.
func DomainsPrefix() string { return domainsPrefix }

// CertKey is the key of a certificate.
func CertKey(id string) string { return certsPrefix + id }

// CertsPrefix is the prefix of every certificate.
func CertsPrefix() string { return certsPrefix }

// AccountDomainKey indexes a domain under its account.
func AccountDomainKey(account, name string) string {
	return accountDomainsPrefix + account + "/" + name
}

// AccountDomainsPrefix is the prefix of an account's domain index.
func AccountDomainsPrefix(account string) string { return accountDomainsPrefix + account + "/" }

// AccountDomainsGuardKey is the guard key of an account's domain index
// (Txn.CountGuarded): every transaction that adds a key under
// AccountDomainsPrefix(account) or removes one also bumps it (Txn.Bump).
func AccountDomainsGuardKey(account string) string { return accountDomainsGuard + account }

// AccountCertKey indexes a certificate under its account.
func AccountCertKey(account, id string) string { return accountCertsPrefix + account + "/" + id }

// AccountCertsPrefix is the prefix of an account's certificate index.
func AccountCertsPrefix(account string) string { return accountCertsPrefix + account + "/" }

// CertDomainKey records that a domain uses a certificate.
func CertDomainKey(certID, domain string) string { return certDomainsPrefix + certID + "/" + domain }

// CertDomainsPrefix is the prefix of the domains using a certificate.
func CertDomainsPrefix(certID string) string { return certDomainsPrefix + certID + "/" }

// NodeKey is the key of an edge node's record.
func NodeKey(name string) string { return nodesPrefix + name }

// NodesPrefix is the prefix of every node record.
func NodesPrefix() string { return nodesPrefix }

// NodeStateKey is the key of an edge node's operator settings.
func NodeStateKey(name string) string { return nodeStatePrefix + name }

// NodeStatesPrefix is the prefix of every node's operator settings.
func NodeStatesPrefix() string { return nodeStatePrefix }

// NodeSessionKey exists while a node holds a config stream to a controller.
func NodeSessionKey(name string) string { return nodeSessionsPrefix + name }

// NodeSessionsPrefix is the prefix of every node session.
func NodeSessionsPrefix() string { return nodeSessionsPrefix }

// TaskKey is the key of a refresh or prefetch task. Task IDs begin with
// their creation time, so keys sort by age.
func TaskKey(id string) string { return tasksPrefix + id }

// TasksPrefix is the prefix of every task.
func TasksPrefix() string { return tasksPrefix }

// AccountTaskKey indexes a task under its account.
func AccountTaskKey(account, id string) string { return accountTasksPrefix + account + "/" + id }

// AccountTasksPrefix is the prefix of an account's task index.
func AccountTasksPrefix(account string) string { return accountTasksPrefix + account + "/" }

// TaskProgressKey is the key of the last report of a node on a task.
func TaskProgressKey(taskID, node string) string { return taskProgressPrefix + taskID + "/" + node }

// TaskProgressPrefix is the prefix of the reports on a task.
func TaskProgressPrefix(taskID string) string { return taskProgressPrefix + taskID + "/" }

// TaskProgressesPrefix is the prefix of every task report.
func TaskProgressesPrefix() string { return taskProgressPrefix }

// QuotaUsageKey is the key of an account's content quota usage on a UTC
// day (YYYY-MM-DD).
func QuotaUsageKey(account, day string) string { return quotaUsagePrefix + account + "/" + day }

// QuotaUsagesPrefix is the prefix of every quota usage record.
func QuotaUsagesPrefix() string { return quotaUsagePrefix }

// PurgeKey is the key of the purge instruction of a refresh task.
func PurgeKey(taskID string) string { return purgesPrefix + taskID }

// PurgesPrefix is the prefix of every purge instruction.
func PurgesPrefix() string { return purgesPrefix }

// PrefetchKey is the key of the prefetch instruction of a prefetch task.
func PrefetchKey(taskID string) string { return prefetchesPrefix + taskID }

// PrefetchesPrefix is the prefix of every prefetch instruction.
func PrefetchesPrefix() string { return prefetchesPrefix }

// PurgeFloorKey holds the highest revision of a purge deleted by retention.
func PurgeFloorKey() string { return purgeFloorKey }

// GossipKeyringKey holds the sealed gossip keyring nodes and schedulers
// receive through the config stream.
func GossipKeyringKey() string { return gossipKeyringKey }

// AutoRefreshKey holds the hex SHA-256 of a domain's bucket-events
// (automatic cache update) secret; it exists while the feature is on.
func AutoRefreshKey(domain string) string { return autoRefreshPrefix + domain }

// AutoRefreshPrefix is the prefix of every bucket-events secret hash.
func AutoRefreshPrefix() string { return autoRefreshPrefix }

// CsrKey is the key of a certificate signing request the controller made.
func CsrKey(id string) string { return csrsPrefix + id }

// CsrsPrefix is the prefix of every CSR.
func CsrsPrefix() string { return csrsPrefix }

// AccountCsrKey indexes a CSR under its account.
func AccountCsrKey(account, id string) string { return accountCsrsPrefix + account + "/" + id }

// AccountCsrsPrefix is the prefix of an account's CSR index.
func AccountCsrsPrefix(account string) string { return accountCsrsPrefix + account + "/" }

// LastSegment returns what follows the last "/" of a key.
func LastSegment(key string) string { return key[strings.LastIndexByte(key, '/')+1:] }
