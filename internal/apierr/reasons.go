package apierr

// Reasons: the machine-readable ErrorInfo.Reason values of the Outpost API.
// They are part of the API contract: clients switch on them, so a reason is
// never renamed or reused for a different condition. docs/api.md lists them.
const (
	ReasonInternal               = "Internal"
	ReasonInvalidArgument        = "InvalidArgument"
	ReasonMissingCredentials     = "MissingCredentials"
	ReasonInvalidToken           = "InvalidToken"
	ReasonReadOnlyToken          = "ReadOnlyToken"
	ReasonOperatorOnly           = "OperatorOnly"
	ReasonAccountRequired        = "AccountRequired"
	ReasonWrongRole              = "WrongRole"
	ReasonConcurrentModification = "ConcurrentModification"
	ReasonStoreUnavailable       = "StoreUnavailable"
	ReasonShuttingDown           = "ShuttingDown"
	ReasonTransactionTooLarge    = "TransactionTooLarge"
	ReasonNotImplemented         = "NotImplemented"
	ReasonInvalidPageToken       = "InvalidPageToken"

	ReasonInvalidDomainName   = "InvalidDomainName"
	ReasonDomainNameNotASCII  = "DomainNameNotAscii"
	ReasonDomainAlreadyExist  = "DomainAlreadyExist"
	ReasonDomainNotFound      = "DomainNotFound"
	ReasonDomainQuotaExceeded = "DomainQuotaExceeded"
	ReasonInvalidOrigin       = "InvalidOrigin"
	ReasonInvalidOriginPort   = "InvalidOriginPort"
	ReasonOriginLoop          = "OriginLoop"
	ReasonInvalidBusinessType = "InvalidBusinessType"
	ReasonInvalidScope        = "InvalidScope"
	ReasonInvalidSniValue     = "InvalidSniValue"
	ReasonInvalidHostHeader   = "InvalidHostHeader"
	ReasonInvalidPolicy       = "InvalidPolicy"
	ReasonInvalidCaPem        = "InvalidCaPem"

	ReasonCertificateNotPem         = "CertificateNotPem"
	ReasonPrivateKeyNotPem          = "PrivateKeyNotPem"
	ReasonPrivateKeyEncrypted       = "PrivateKeyEncrypted"
	ReasonCertificateKeyMismatch    = "CertificateKeyMismatch"
	ReasonCertificateChainInvalid   = "CertificateChainInvalid"
	ReasonCertificateExpired        = "CertificateExpired"
	ReasonCertificateNotYetValid    = "CertificateNotYetValid"
	ReasonWeakKey                   = "WeakKey"
	ReasonCertificateDomainMismatch = "CertificateDomainMismatch"
	ReasonCertificateNotFound       = "CertificateNotFound"
	ReasonCertificateInUse          = "CertificateInUse"
	ReasonCertificateOwned          = "CertificateOwnedByDomain"
	ReasonHTTPSNotEnabled           = "HttpsNotEnabled"
	// EnableHttps with free: the controller has no ACME CA configured.
	ReasonFreeCertificatesDisabled = "FreeCertificatesDisabled"
	// EnableHttps with free on a wildcard domain, which HTTP-01 cannot
	// validate.
	ReasonFreeCertificateWildcard = "FreeCertificateWildcard"

	ReasonUnsupportedKeyType  = "UnsupportedKeyType"
	ReasonInvalidCsrSubject   = "InvalidCsrSubject"
	ReasonCsrNotFound         = "CsrNotFound"
	ReasonCsrAlreadyCompleted = "CsrAlreadyCompleted"

	ReasonInvalidAccountID    = "InvalidAccountId"
	ReasonAccountAlreadyExist = "AccountAlreadyExist"
	ReasonAccountNotFound     = "AccountNotFound"
	ReasonTokenNotFound       = "TokenNotFound"
	ReasonInvalidRole         = "InvalidRole"
	ReasonNodeNotFound        = "NodeNotFound"
	ReasonInvalidGossipKey    = "InvalidGossipKey"

	ReasonInvalidCacheRule  = "InvalidCacheRule"
	ReasonTooManyCacheRules = "TooManyCacheRules"
	ReasonCacheRuleNotFound = "CacheRuleNotFound"
	ReasonNoBucketOrigin    = "NoBucketOrigin"
	ReasonWildcardDomain    = "WildcardDomain"

	ReasonInvalidRefreshType   = "InvalidRefreshType"
	ReasonNoEntries            = "NoEntries"
	ReasonTooManyEntries       = "TooManyEntries"
	ReasonInvalidURL           = "InvalidUrl"
	ReasonInvalidRegex         = "InvalidRegex"
	ReasonURLDomainNotOwned    = "UrlDomainNotOwned"
	ReasonInvalidRegion        = "InvalidRegion"
	ReasonContentQuotaExceeded = "ContentQuotaExceeded"
	ReasonTaskNotFound         = "TaskNotFound"
	ReasonInvalidUpdateMask    = "InvalidUpdateMask"

	// The cluster PKI (PkiService, and the member certificates that node
	// methods require).
	ReasonInvalidJoinToken          = "InvalidJoinToken"
	ReasonInvalidCsr                = "InvalidCsr"
	ReasonMemberNameMismatch        = "MemberNameMismatch"
	ReasonMemberCertificateRequired = "MemberCertificateRequired"
	ReasonMemberCertificateRevoked  = "MemberCertificateRevoked"
	ReasonMemberCertificateExpired  = "MemberCertificateExpired"
	ReasonNodeTokensReplaced        = "NodeTokensReplaced"
)
