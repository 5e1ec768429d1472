package krb5kdc

import (
	"fmt"

	"github.com/jcmturner/gofork/encoding/asn1"
	"os"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/credentials"
	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/gssapi"
	"github.com/jcmturner/gokrb5/v8/iana/flags"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

// Client is a Kerberos client of the realm (gokrb5's, pure Go): it makes
// Negotiate tokens for a service without forking kinit or curl per token.
type Client struct {
	cl *client.Client
}

// Login returns a client signed in as name with password (AS exchange
// against the KDC).
func (k *KDC) Login(name, password string) (*Client, error) {
	cfg, err := k.clientConfig()
	if err != nil {
		return nil, err
	}
	cl := client.NewWithPassword(name, k.Realm, password, cfg, client.DisablePAFXFAST(true))
	if err := cl.Login(); err != nil {
		return nil, fmt.Errorf("krb5kdc: login %s: %w", name, err)
	}
	return &Client{cl: cl}, nil
}

// FromCCache returns a client using the TGT in the MIT credentials cache
// at path (after Kinit).
func (k *KDC) FromCCache(path string) (*Client, error) {
	cfg, err := k.clientConfig()
	if err != nil {
		return nil, err
	}
	cc, err := credentials.LoadCCache(path)
	if err != nil {
		return nil, err
	}
	cl, err := client.NewFromCCache(cc, cfg, client.DisablePAFXFAST(true))
	if err != nil {
		return nil, err
	}
	return &Client{cl: cl}, nil
}

func (k *KDC) clientConfig() (*config.Config, error) {
	b, err := os.ReadFile(k.Krb5Conf)
	if err != nil {
		return nil, err
	}
	return config.NewFromString(string(b))
}

// Token returns a SPNEGO negTokenInit with a fresh AP-REQ for spn
// ("HTTP/mail.example.test"), as a browser sends it after
// "Negotiate " (still to be base64-encoded). The service ticket is cached
// by the client; each call makes a new authenticator.
func (c *Client) Token(spn string) ([]byte, error) {
	tkt, key, err := c.cl.GetServiceTicket(spn)
	if err != nil {
		return nil, fmt.Errorf("krb5kdc: service ticket for %s: %w", spn, err)
	}
	init, err := spnego.NewNegTokenInitKRB5(c.cl, tkt, key)
	if err != nil {
		return nil, err
	}
	tok := spnego.SPNEGOToken{Init: true, NegTokenInit: init}
	return tok.Marshal()
}

// RawToken is a bare Kerberos GSS-API token (RFC 4121 4.1, no SPNEGO
// around it), which RFC 4559 clients may send too.
func (c *Client) RawToken(spn string) ([]byte, error) {
	tkt, key, err := c.cl.GetServiceTicket(spn)
	if err != nil {
		return nil, err
	}
	mt, err := spnego.NewKRB5TokenAPREQ(c.cl, tkt, key, []int{gssapi.ContextFlagInteg}, nil)
	if err != nil {
		return nil, err
	}
	return mt.Marshal()
}

// MutualToken is Token with GSS_C_MUTUAL_FLAG set (RFC 4121 4.1.1.1), as
// curl and browsers send it. verify checks the acceptor's answer (the
// SPNEGO negTokenResp from WWW-Authenticate: Negotiate, decoded): that it
// completes the negotiation and carries an AP-REP made with the ticket's
// session key echoing this authenticator's time (RFC 4120 3.2.5).
func (c *Client) MutualToken(spn string) (tok []byte, verify func(resp []byte) error, err error) {
	tkt, key, err := c.cl.GetServiceTicket(spn)
	if err != nil {
		return nil, nil, fmt.Errorf("krb5kdc: service ticket for %s: %w", spn, err)
	}
	mt, err := spnego.NewKRB5TokenAPREQ(c.cl, tkt, key,
		[]int{gssapi.ContextFlagInteg, gssapi.ContextFlagConf, gssapi.ContextFlagMutual}, []int{flags.APOptionMutualRequired})
	if err != nil {
		return nil, nil, err
	}
	mtb, err := mt.Marshal()
	if err != nil {
		return nil, nil, err
	}
	req := mt.APReq
	if err := req.DecryptAuthenticator(key); err != nil {
		return nil, nil, err
	}
	init := spnego.NegTokenInit{MechTypes: []asn1.ObjectIdentifier{gssapi.OIDKRB5.OID()}, MechTokenBytes: mtb}
	tok, err = (&spnego.SPNEGOToken{Init: true, NegTokenInit: init}).Marshal()
	if err != nil {
		return nil, nil, err
	}
	verify = func(resp []byte) error {
		var r spnego.NegTokenResp
		if err := r.Unmarshal(resp); err != nil {
			return fmt.Errorf("negTokenResp: %w", err)
		}
		if r.State() != spnego.NegStateAcceptCompleted {
			return fmt.Errorf("negState %d, want accept-completed", r.State())
		}
		var k spnego.KRB5Token
		if err := k.Unmarshal(r.ResponseToken); err != nil {
			return fmt.Errorf("response token: %w", err)
		}
		if !k.IsAPRep() {
			return fmt.Errorf("response token is not an AP-REP")
		}
		plain, err := crypto.DecryptEncPart(k.APRep.EncPart, key, keyusage.AP_REP_ENCPART)
		if err != nil {
			return fmt.Errorf("AP-REP does not decrypt with the session key: %w", err)
		}
		var part messages.EncAPRepPart
		if err := part.Unmarshal(plain); err != nil {
			return err
		}
		if !part.CTime.Equal(req.Authenticator.CTime) || part.Cusec != req.Authenticator.Cusec {
			return fmt.Errorf("AP-REP time %v.%06d, authenticator's %v.%06d", part.CTime, part.Cusec, req.Authenticator.CTime, req.Authenticator.Cusec)
		}
		return nil
	}
	return tok, verify, nil
}

// Destroy forgets the client's tickets.
func (c *Client) Destroy() { c.cl.Destroy() }
