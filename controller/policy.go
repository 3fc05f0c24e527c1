package controller

import (
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// methodPolicy says what every API method requires of its caller. A method
// missing here is refused (PermissionDenied), so a new RPC is closed until
// it is given a policy; TestEveryMethodHasAPolicy checks the table is whole.
var methodPolicy = map[string]access{
	outpostv1.DomainService_CreateDomain_FullMethodName:  accessWrite,
	outpostv1.DomainService_GetDomain_FullMethodName:     accessRead,
	outpostv1.DomainService_ListDomains_FullMethodName:   accessRead,
	outpostv1.DomainService_DeleteDomain_FullMethodName:  accessWrite,
	outpostv1.DomainService_EnableDomain_FullMethodName:  accessWrite,
	outpostv1.DomainService_DisableDomain_FullMethodName: accessWrite,

	outpostv1.CertificateService_UploadCertificate_FullMethodName:        accessWrite,
	outpostv1.CertificateService_GetCertificate_FullMethodName:           accessRead,
	outpostv1.CertificateService_ListCertificates_FullMethodName:         accessRead,
	outpostv1.CertificateService_DeleteCertificate_FullMethodName:        accessWrite,
	outpostv1.CertificateService_DeployCertificate_FullMethodName:        accessWrite,
	outpostv1.CertificateService_RenewCertificate_FullMethodName:         accessWrite,
	outpostv1.CertificateService_ListCertificateDomains_FullMethodName:   accessRead,
	outpostv1.CertificateService_ListHttpsDomains_FullMethodName:         accessRead,
	outpostv1.CertificateService_GetDomainCertificateInfo_FullMethodName: accessRead,
	outpostv1.CertificateService_GetCertificateStats_FullMethodName:      accessRead,
	outpostv1.CertificateService_CreateCsr_FullMethodName:                accessWrite,
	outpostv1.CertificateService_GetCsr_FullMethodName:                   accessRead,
	outpostv1.CertificateService_ListCsrs_FullMethodName:                 accessRead,
	outpostv1.CertificateService_CompleteCsr_FullMethodName:              accessWrite,
	outpostv1.CertificateService_DeleteCsr_FullMethodName:                accessWrite,

	outpostv1.KeyringService_GetKeyringStatus_FullMethodName: accessOperator,
	outpostv1.KeyringService_RewrapSecrets_FullMethodName:    accessOperator,

	outpostv1.HttpsService_EnableHttps_FullMethodName:      accessWrite,
	outpostv1.HttpsService_DisableHttps_FullMethodName:     accessWrite,
	outpostv1.HttpsService_SetHttpsRedirect_FullMethodName: accessWrite,
	outpostv1.HttpsService_GetHttpsSettings_FullMethodName: accessRead,

	outpostv1.OriginService_GetOriginSettings_FullMethodName: accessRead,
	outpostv1.OriginService_SetOrigins_FullMethodName:        accessWrite,
	outpostv1.OriginService_SetOriginSni_FullMethodName:      accessWrite,
	outpostv1.OriginService_SetOriginHost_FullMethodName:     accessWrite,
	outpostv1.OriginService_SetOriginProtocol_FullMethodName: accessWrite,
	outpostv1.OriginService_SetOriginVerify_FullMethodName:   accessWrite,

	outpostv1.CacheService_AddCacheRule_FullMethodName:       accessWrite,
	outpostv1.CacheService_RemoveCacheRule_FullMethodName:    accessWrite,
	outpostv1.CacheService_ListCacheRules_FullMethodName:     accessRead,
	outpostv1.CacheService_SetCacheKeyOptions_FullMethodName: accessWrite,
	outpostv1.CacheService_EnableAutoRefresh_FullMethodName:  accessWrite,
	outpostv1.CacheService_DisableAutoRefresh_FullMethodName: accessWrite,

	outpostv1.ContentService_RefreshObjects_FullMethodName:  accessWrite,
	outpostv1.ContentService_PrefetchObjects_FullMethodName: accessWrite,
	outpostv1.ContentService_GetTask_FullMethodName:         accessRead,
	outpostv1.ContentService_ListTasks_FullMethodName:       accessRead,

	outpostv1.NodeService_ListNodes_FullMethodName:        accessView,
	outpostv1.NodeService_GetNode_FullMethodName:          accessView,
	outpostv1.NodeService_DrainNode_FullMethodName:        accessOperator,
	outpostv1.NodeService_SetGossipKeyring_FullMethodName: accessOperator,
	outpostv1.NodeService_GetGossipKeyring_FullMethodName: accessOperator,

	outpostv1.AccountService_WhoAmI_FullMethodName:          accessAny,
	outpostv1.AccountService_CreateAccount_FullMethodName:   accessOperator,
	outpostv1.AccountService_GetAccount_FullMethodName:      accessAny,
	outpostv1.AccountService_ListAccounts_FullMethodName:    accessOperator,
	outpostv1.AccountService_SetAccountQuota_FullMethodName: accessOperator,
	outpostv1.AccountService_CreateToken_FullMethodName:     accessManage,
	outpostv1.AccountService_ListTokens_FullMethodName:      accessManage,
	outpostv1.AccountService_RevokeToken_FullMethodName:     accessManage,

	outpostv1.ConfigDiscoveryService_StreamConfig_FullMethodName: accessNode,

	outpostv1.PkiService_GetCaCertificate_FullMethodName:       accessPublic,
	outpostv1.PkiService_Join_FullMethodName:                   accessPublic,
	outpostv1.PkiService_CreateJoinToken_FullMethodName:        accessOperator,
	outpostv1.PkiService_RenewMemberCertificate_FullMethodName: accessNode,
	outpostv1.PkiService_ListMemberCertificates_FullMethodName: accessOperator,
	outpostv1.PkiService_RevokeMember_FullMethodName:           accessOperator,
}
