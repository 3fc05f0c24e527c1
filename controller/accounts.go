package controller

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/outpost-cdn/outpost/controller/store"
	"github.com/outpost-cdn/outpost/internal/apierr"
	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// maxDomainQuota bounds what an operator can set, to catch typos.
const maxDomainQuota = 1_000_000

// accountService implements outpostv1.AccountServiceServer.
type accountService struct {
	outpostv1.UnimplementedAccountServiceServer
	c *Controller
}

var _ outpostv1.AccountServiceServer = (*accountService)(nil)

func (s *accountService) WhoAmI(ctx context.Context, _ *outpostv1.WhoAmIRequest) (*outpostv1.WhoAmIResponse, error) {
	p := principalFrom(ctx)
	tok, err := s.c.tokenByID(ctx, p.TokenID)
	if err != nil {
		return nil, err
	}
	return &outpostv1.WhoAmIResponse{Token: tok}, nil
}

func (s *accountService) CreateAccount(ctx context.Context, req *outpostv1.CreateAccountRequest) (*outpostv1.CreateAccountResponse, error) {
	id := strings.TrimSpace(req.GetId())
	if err := validAccountID(id); err != nil {
		return nil, err
	}
	if req.GetDomainQuota() > maxDomainQuota {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "domain quota %d is above the maximum %d", req.GetDomainQuota(), maxDomainQuota)
	}
	t := s.c.store.Begin()
	if found, err := t.Guard(ctx, store.AccountKey(id)); err != nil {
		return nil, err
	} else if found {
		return nil, apierr.AlreadyExists(apierr.ReasonAccountAlreadyExist, "account %s already exists", id)
	}
	a := &outpostv1.Account{Id: id, DisplayName: req.GetDisplayName(), DomainQuota: req.GetDomainQuota(), CreateTime: s.c.timestamp()}
	t.Put(store.AccountKey(id), a)
	if _, err := t.Commit(ctx); err != nil {
		return nil, err
	}
	return &outpostv1.CreateAccountResponse{Account: s.c.withQuota(a)}, nil
}

// withQuota shows the effective quotas rather than 0 for "the default".
func (c *Controller) withQuota(a *outpostv1.Account) *outpostv1.Account {
	if a.GetDomainQuota() == 0 {
		a.DomainQuota = uint32(c.cfg.DefaultDomainQuota)
	}
	a.ContentQuota = c.contentQuota(a)
	return a
}

func (c *Controller) readAccount(ctx context.Context, id string) (*outpostv1.Account, error) {
	a := &outpostv1.Account{}
	_, found, err := c.store.Get(ctx, store.AccountKey(id), a)
	if err != nil {
		return nil, err
	}
	if !found || id == "" {
		return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %q not found", id)
	}
	n, err := c.store.Count(ctx, store.AccountDomainsPrefix(id))
	if err != nil {
		return nil, err
	}
	a.DomainCount = uint32(n)
	return c.withQuota(a), nil
}

func (s *accountService) GetAccount(ctx context.Context, req *outpostv1.GetAccountRequest) (*outpostv1.GetAccountResponse, error) {
	p := principalFrom(ctx)
	id := req.GetId()
	if id == "" {
		id = p.Account
	}
	if !p.IsOperator() && id != p.Account {
		// Other accounts are not disclosed.
		return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %q not found", id)
	}
	a, err := s.c.readAccount(ctx, id)
	if err != nil {
		return nil, err
	}
	return &outpostv1.GetAccountResponse{Account: a}, nil
}

func (s *accountService) ListAccounts(ctx context.Context, req *outpostv1.ListAccountsRequest) (*outpostv1.ListAccountsResponse, error) {
	ids, next, err := s.c.indexPage(ctx, store.AccountsPrefix(), req.GetPageToken(), req.GetPageSize())
	if err != nil {
		return nil, err
	}
	resp := &outpostv1.ListAccountsResponse{NextPageToken: next}
	for _, id := range ids {
		a, err := s.c.readAccount(ctx, id)
		if status.Code(err) == codes.NotFound {
			continue // deleted between the two reads
		}
		if err != nil {
			return nil, err
		}
		resp.Accounts = append(resp.Accounts, a)
	}
	return resp, nil
}

func (s *accountService) SetAccountQuota(ctx context.Context, req *outpostv1.SetAccountQuotaRequest) (*outpostv1.SetAccountQuotaResponse, error) {
	if req.GetDomainQuota() > maxDomainQuota {
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "domain quota %d is above the maximum %d", req.GetDomainQuota(), maxDomainQuota)
	}
	cq := req.GetContentQuota()
	for _, v := range []uint32{cq.GetRefreshUrls(), cq.GetRefreshDirectories(), cq.GetRefreshRegexes(), cq.GetPrefetchUrls()} {
		if v > maxContentQuota {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidArgument, "content quota %d is above the maximum %d", v, maxContentQuota)
		}
	}
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		paths = []string{"domain_quota"}
		if cq != nil {
			paths = append(paths, "content_quota")
		}
	}
	t := s.c.store.Begin()
	a := &outpostv1.Account{}
	if found, err := t.Get(ctx, store.AccountKey(req.GetId()), a); err != nil {
		return nil, err
	} else if !found || req.GetId() == "" {
		return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %q not found", req.GetId())
	}
	if err := applyQuotaPaths(a, req, paths); err != nil {
		return nil, err
	}
	t.Put(store.AccountKey(a.GetId()), a)
	if _, err := t.Commit(ctx); err != nil {
		return nil, err
	}
	a, err := s.c.readAccount(ctx, a.GetId())
	if err != nil {
		return nil, err
	}
	return &outpostv1.SetAccountQuotaResponse{Account: a}, nil
}

// applyQuotaPaths copies the quota fields named by an update mask from the
// request to the stored account.
func applyQuotaPaths(a *outpostv1.Account, req *outpostv1.SetAccountQuotaRequest, paths []string) error {
	in := req.GetContentQuota()
	content := func() *outpostv1.ContentQuota {
		if a.ContentQuota == nil {
			a.ContentQuota = &outpostv1.ContentQuota{}
		}
		return a.ContentQuota
	}
	for _, p := range paths {
		switch p {
		case "domain_quota":
			a.DomainQuota = req.GetDomainQuota()
		case "content_quota":
			a.ContentQuota = &outpostv1.ContentQuota{
				RefreshUrls: in.GetRefreshUrls(), RefreshDirectories: in.GetRefreshDirectories(),
				RefreshRegexes: in.GetRefreshRegexes(), PrefetchUrls: in.GetPrefetchUrls(),
			}
		case "content_quota.refresh_urls":
			content().RefreshUrls = in.GetRefreshUrls()
		case "content_quota.refresh_directories":
			content().RefreshDirectories = in.GetRefreshDirectories()
		case "content_quota.refresh_regexes":
			content().RefreshRegexes = in.GetRefreshRegexes()
		case "content_quota.prefetch_urls":
			content().PrefetchUrls = in.GetPrefetchUrls()
		default:
			return apierr.InvalidArgument(apierr.ReasonInvalidUpdateMask,
				"update_mask path %q is not a quota: use domain_quota, content_quota or content_quota.<field>", p).With("path", p)
		}
	}
	if proto.Equal(a.ContentQuota, &outpostv1.ContentQuota{}) {
		a.ContentQuota = nil
	}
	return nil
}

func (s *accountService) CreateToken(ctx context.Context, req *outpostv1.CreateTokenRequest) (*outpostv1.CreateTokenResponse, error) {
	c, p := s.c, principalFrom(ctx)
	role, account := req.GetRole(), req.GetAccount()
	if !p.IsOperator() && account == "" {
		account = p.Account
	}
	switch role {
	case outpostv1.Role_ROLE_ADMIN, outpostv1.Role_ROLE_READ_ONLY:
		if account == "" {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidRole, "admin and read-only tokens belong to an account: give one")
		}
		if !p.IsOperator() && account != p.Account {
			return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %q not found", account)
		}
	case outpostv1.Role_ROLE_NODE:
		// Edge nodes and schedulers authenticate with member certificates
		// now: a bearer token would be a weaker way in.
		return nil, apierr.FailedPrecondition(apierr.ReasonNodeTokensReplaced, "node tokens are replaced by one-time join tokens and member certificates: use PkiService.CreateJoinToken (outpostctl node join-token create)")
	case outpostv1.Role_ROLE_OPERATOR:
		if !p.IsOperator() {
			return nil, apierr.PermissionDenied(apierr.ReasonOperatorOnly, "only an operator can create %s tokens", shortRole(role))
		}
		if account != "" {
			return nil, apierr.InvalidArgument(apierr.ReasonInvalidRole, "%s tokens belong to no account", shortRole(role))
		}
	default:
		return nil, apierr.InvalidArgument(apierr.ReasonInvalidRole, "role %d is unknown: use admin, read-only, operator or node", role)
	}
	t := c.store.Begin()
	if account != "" {
		if found, err := t.Guard(ctx, store.AccountKey(account)); err != nil {
			return nil, err
		} else if !found {
			return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %q not found", account)
		}
	}
	secret := newSecret()
	tok := &outpostv1.Token{Id: newID("tok"), Account: account, Role: role, Description: req.GetDescription(), CreateTime: c.timestamp()}
	if _, err := t.Guard(ctx, store.TokenIDKey(tok.GetId())); err != nil {
		return nil, err
	}
	t.Put(store.TokenKey(hashSecret(secret)), &storagev1.StoredToken{Token: tok})
	t.PutRaw(store.TokenIDKey(tok.GetId()), hashSecret(secret))
	if _, err := t.Commit(ctx); err != nil {
		return nil, err
	}
	return &outpostv1.CreateTokenResponse{Token: tok, Secret: secret}, nil
}

func (s *accountService) ListTokens(ctx context.Context, req *outpostv1.ListTokensRequest) (*outpostv1.ListTokensResponse, error) {
	p := principalFrom(ctx)
	account := req.GetAccount()
	if !p.IsOperator() {
		if account != "" && account != p.Account {
			return nil, apierr.NotFound(apierr.ReasonAccountNotFound, "account %q not found", account)
		}
		account = p.Account
	}
	kvs, _, err := s.c.store.Range(ctx, store.TokensPrefix(), "", 0)
	if err != nil {
		return nil, err
	}
	resp := &outpostv1.ListTokensResponse{}
	for _, kv := range kvs {
		st := &storagev1.StoredToken{}
		if err := store.Decode(kv, st); err != nil {
			return nil, err
		}
		if st.GetToken().GetAccount() == account {
			resp.Tokens = append(resp.Tokens, st.GetToken())
		}
	}
	return resp, nil
}

// tokenByID finds a token's description by its ID.
func (c *Controller) tokenByID(ctx context.Context, id string) (*outpostv1.Token, error) {
	hash, found, err := c.store.GetRaw(ctx, store.TokenIDKey(id))
	if err != nil {
		return nil, err
	}
	if !found || id == "" {
		return nil, apierr.NotFound(apierr.ReasonTokenNotFound, "token %q not found", id)
	}
	st := &storagev1.StoredToken{}
	if _, found, err := c.store.Get(ctx, store.TokenKey(hash), st); err != nil {
		return nil, err
	} else if !found {
		return nil, apierr.NotFound(apierr.ReasonTokenNotFound, "token %q not found", id)
	}
	return st.GetToken(), nil
}

func (s *accountService) RevokeToken(ctx context.Context, req *outpostv1.RevokeTokenRequest) (*outpostv1.RevokeTokenResponse, error) {
	c, p := s.c, principalFrom(ctx)
	id := req.GetId()
	t := c.store.Begin()
	hash, found, err := t.GetRaw(ctx, store.TokenIDKey(id))
	if err != nil {
		return nil, err
	} else if !found || id == "" {
		return nil, apierr.NotFound(apierr.ReasonTokenNotFound, "token %q not found", id)
	}
	st := &storagev1.StoredToken{}
	if found, err := t.Get(ctx, store.TokenKey(hash), st); err != nil {
		return nil, err
	} else if !found || (!p.IsOperator() && st.GetToken().GetAccount() != p.Account) {
		return nil, apierr.NotFound(apierr.ReasonTokenNotFound, "token %q not found", id)
	}
	t.Delete(store.TokenKey(hash))
	t.Delete(store.TokenIDKey(id))
	if _, err := t.Commit(ctx); err != nil {
		return nil, err
	}
	return &outpostv1.RevokeTokenResponse{}, nil
}
