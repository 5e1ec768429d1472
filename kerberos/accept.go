package kerberos

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/gssapi"
	"github.com/jcmturner/gokrb5/v8/iana/flags"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"
)

// DefaultMaxSkew is the clock skew allowed between client and gateway
// (RFC 4120 1.6 suggests 5 minutes; so do MIT and Active Directory).
const DefaultMaxSkew = 5 * time.Minute

// DefaultMaxTokenBytes bounds a decoded token. An AP-REQ is its ticket
// plus an authenticator; an Active Directory ticket carries the user's
// group SIDs in its PAC and reaches 12-48 KiB for users in very many
// groups (Microsoft's MaxTokenSize is 48000 bytes).
const DefaultMaxTokenBytes = 48000

// Config configures an Acceptor.
type Config struct {
	Keytab *Keytab
	// MaxSkew is the allowed clock skew; 0 means DefaultMaxSkew.
	MaxSkew time.Duration
	// Realms are the realms whose client principals are accepted; empty
	// means the realms of the keytab's own principals. Cross-realm users
	// need their realm listed.
	Realms []string
	// Replay is the instance's replay cache; required.
	Replay *ReplayCache
	// MaxTokenBytes bounds a decoded token; 0 means DefaultMaxTokenBytes.
	MaxTokenBytes int
}

// Acceptor verifies Negotiate tokens. It is safe for concurrent use.
type Acceptor struct {
	cfg Config
}

// NewAcceptor returns an Acceptor for cfg.
func NewAcceptor(cfg Config) *Acceptor {
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = DefaultMaxSkew
	}
	if cfg.MaxTokenBytes <= 0 {
		cfg.MaxTokenBytes = DefaultMaxTokenBytes
	}
	return &Acceptor{cfg: cfg}
}

// MaxTokenBytes is the bound on a decoded token.
func (a *Acceptor) MaxTokenBytes() int { return a.cfg.MaxTokenBytes }

// Result is an accepted token.
type Result struct {
	// Client is the client principal, "name@REALM" (name components
	// joined by "/"); Name and Realm are its parts.
	Client, Name, Realm string
	// Service is the service principal the ticket was for, "HTTP/host@REALM".
	Service string
	// KVNO is the key version the ticket was encrypted with.
	KVNO int
	// EndTime is when the ticket expires: the authentication holds no
	// longer.
	EndTime time.Time
	// Response is the acceptor's SPNEGO token (RFC 4178 4.2.2
	// negTokenResp, accept-completed), carrying the AP-REP when the
	// client asked for mutual authentication (RFC 4121 4.1.1.1,
	// GSS_C_MUTUAL_FLAG); it goes back in WWW-Authenticate: Negotiate
	// (RFC 4559 5). For a raw Kerberos token (no SPNEGO) it is the bare
	// GSS-API AP-REP token, or nil without mutual authentication.
	Response []byte
}

// Object identifiers of the mechanisms a client may offer.
var (
	oidSPNEGO   = gssapi.OIDSPNEGO.OID()
	oidKRB5     = gssapi.OIDKRB5.OID()
	oidMSKRB5   = gssapi.OIDMSLegacyKRB5.OID() // what Windows puts first
	oidNTLMSSP  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 2, 2, 10}
	ntlmMagic   = []byte("NTLMSSP\x00")
	krb5APReqID = []byte{0x01, 0x00} // RFC 4121 4.1: TOK_ID of an AP-REQ
)

// IsNTLM reports whether a decoded token is a raw NTLM message, which
// some clients send under "Negotiate" when Kerberos is not available.
func IsNTLM(tok []byte) bool { return bytes.HasPrefix(tok, ntlmMagic) }

// Accept verifies a decoded Negotiate token (RFC 4559 4.2) and returns who
// the client is. now is the time to check the ticket and authenticator
// against. Every refusal is an *Error with its Reason.
func (a *Acceptor) Accept(tok []byte, now time.Time) (*Result, error) {
	if len(tok) > a.cfg.MaxTokenBytes {
		return nil, refuse(ReasonTooLarge, "token of %d bytes (limit %d)", len(tok), a.cfg.MaxTokenBytes)
	}
	if IsNTLM(tok) {
		return nil, refuse(ReasonNTLM, "an NTLM token")
	}
	mechTok, mech, spnegoUsed, err := unwrap(tok)
	if err != nil {
		return nil, err
	}
	// RFC 4121 4.1: [APPLICATION 0] { OID krb5, TOK_ID 01 00, AP-REQ }.
	var oid asn1.ObjectIdentifier
	rest, err := asn1.UnmarshalWithParams(mechTok, &oid, "application,explicit,tag:0")
	if err != nil {
		return nil, refuse(ReasonBadToken, "not a Kerberos GSS-API token: %v", err)
	}
	if !oid.Equal(oidKRB5) && !oid.Equal(oidMSKRB5) {
		return nil, refuse(ReasonBadToken, "mechanism %s is not Kerberos", oid)
	}
	if len(rest) < 2 || !bytes.Equal(rest[:2], krb5APReqID) {
		return nil, refuse(ReasonBadToken, "not an AP-REQ")
	}
	var req messages.APReq
	if err := req.Unmarshal(rest[2:]); err != nil {
		return nil, refuse(ReasonBadToken, "AP-REQ: %v", err)
	}
	res, err := a.verify(&req, now)
	if err != nil {
		return nil, err
	}
	if mutual(&req.Authenticator) {
		rep, err := apRep(&req)
		if err != nil {
			return nil, refuse(ReasonBadToken, "AP-REP: %v", err)
		}
		res.Response = rep
	}
	if spnegoUsed {
		// The mechanism echoed is the one the client's token was for
		// (the first it offered), so no mechListMIC is needed (RFC 4178
		// 5: the preferred mechanism was selected).
		resp := spnego.NegTokenResp{NegState: asn1.Enumerated(spnego.NegStateAcceptCompleted), SupportedMech: mech, ResponseToken: res.Response}
		b, err := resp.Marshal()
		if err != nil {
			return nil, refuse(ReasonBadToken, "negTokenResp: %v", err)
		}
		res.Response = b
	}
	return res, nil
}

// unwrap returns the mechanism token of a SPNEGO negTokenInit (RFC 4178
// 4.2.1), or tok itself when it is a raw Kerberos GSS-API token, which
// RFC 4559 clients may send too.
func unwrap(tok []byte) (mechTok []byte, mech asn1.ObjectIdentifier, spnegoUsed bool, err error) {
	var oid asn1.ObjectIdentifier
	if _, err := asn1.UnmarshalWithParams(tok, &oid, "application,explicit,tag:0"); err != nil {
		return nil, nil, false, refuse(ReasonBadToken, "not a GSS-API token: %v", err)
	}
	if oid.Equal(oidKRB5) || oid.Equal(oidMSKRB5) {
		return tok, oid, false, nil
	}
	if !oid.Equal(oidSPNEGO) {
		return nil, nil, false, refuse(ReasonBadToken, "mechanism %s is neither SPNEGO nor Kerberos", oid)
	}
	var st spnego.SPNEGOToken
	if err := st.Unmarshal(tok); err != nil {
		return nil, nil, false, refuse(ReasonBadToken, "SPNEGO: %v", err)
	}
	if !st.Init || len(st.NegTokenInit.MechTypes) == 0 {
		return nil, nil, false, refuse(ReasonBadToken, "SPNEGO token is not a negTokenInit")
	}
	first := st.NegTokenInit.MechTypes[0]
	switch {
	case first.Equal(oidKRB5), first.Equal(oidMSKRB5):
	case first.Equal(oidNTLMSSP) && !slices.ContainsFunc(st.NegTokenInit.MechTypes, isKRB5):
		return nil, nil, false, refuse(ReasonNTLM, "SPNEGO offers only NTLM")
	default:
		// A client preferring another mechanism sends its optimistic
		// token for that one. Asking for a second round with Kerberos
		// (accept-incomplete) needs state across requests that a
		// stateless array does not keep; such clients use Kerberos
		// first in practice (Windows, MIT, Heimdal).
		if IsNTLM(st.NegTokenInit.MechTokenBytes) || !slices.ContainsFunc(st.NegTokenInit.MechTypes, isKRB5) {
			return nil, nil, false, refuse(ReasonNTLM, "SPNEGO prefers NTLM")
		}
		return nil, nil, false, refuse(ReasonBadToken, "SPNEGO prefers mechanism %s over Kerberos", first)
	}
	if len(st.NegTokenInit.MechTokenBytes) == 0 {
		return nil, nil, false, refuse(ReasonBadToken, "SPNEGO negTokenInit carries no Kerberos token")
	}
	return st.NegTokenInit.MechTokenBytes, first, true, nil
}

func isKRB5(o asn1.ObjectIdentifier) bool { return o.Equal(oidKRB5) || o.Equal(oidMSKRB5) }

// verify runs the checks of RFC 4120 3.2.3 on an AP-REQ.
func (a *Acceptor) verify(req *messages.APReq, now time.Time) (*Result, error) {
	if types.IsFlagSet(&req.APOptions, flags.APOptionUseSessionKey) {
		return nil, refuse(ReasonBadToken, "user-to-user AP-REQ")
	}
	tkt := &req.Ticket
	service := tkt.SName.PrincipalNameString() + "@" + tkt.Realm
	key, err := a.key(tkt)
	if err != nil {
		return nil, err
	}
	if err := tkt.Decrypt(key); err != nil {
		// The keytab holds this kvno but not the key the KDC used:
		// the password was changed without a new kvno, or the keytab
		// belongs to another account of the same name.
		return nil, refuse(ReasonBadToken, "ticket for %s kvno %d does not decrypt with the keytab's key: %v", service, tkt.EncPart.KVNO, err)
	}
	enc := &tkt.DecryptedEncPart
	skew := a.cfg.MaxSkew
	if types.IsFlagSet(&enc.Flags, flags.Invalid) {
		return nil, refuse(ReasonExpired, "ticket is flagged invalid (postdated, not yet validated)")
	}
	if enc.StartTime.Sub(now) > skew {
		return nil, refuse(ReasonExpired, "ticket is not valid before %s", enc.StartTime.UTC().Format(time.RFC3339))
	}
	if now.Sub(enc.EndTime) > skew {
		return nil, refuse(ReasonExpired, "ticket expired at %s", enc.EndTime.UTC().Format(time.RFC3339))
	}
	if err := req.DecryptAuthenticator(enc.Key); err != nil {
		return nil, refuse(ReasonBadToken, "authenticator does not decrypt with the ticket's session key")
	}
	au := &req.Authenticator
	if !au.CName.Equal(enc.CName) || au.CRealm != enc.CRealm {
		return nil, refuse(ReasonBadToken, "authenticator names %s@%s, ticket %s@%s",
			au.CName.PrincipalNameString(), au.CRealm, enc.CName.PrincipalNameString(), enc.CRealm)
	}
	ctime := au.CTime.Add(time.Duration(au.Cusec) * time.Microsecond)
	if d := now.Sub(ctime); d > skew || -d > skew {
		return nil, refuse(ReasonSkew, "authenticator time %s is %s from this clock (limit %s)",
			ctime.UTC().Format(time.RFC3339), d.Round(time.Second), skew)
	}
	realms := a.cfg.Realms
	if len(realms) == 0 {
		realms = a.cfg.Keytab.Realms()
	}
	if !slices.Contains(realms, enc.CRealm) {
		return nil, refuse(ReasonUnknownPrincipal, "client realm %s is not accepted (accepted: %s)", enc.CRealm, strings.Join(realms, ", "))
	}
	// Replay last: only a token that is otherwise good takes a slot, so
	// garbage cannot flush the cache.
	sum := sha256.Sum256(req.EncryptedAuthenticator.Cipher)
	var rk ReplayKey
	copy(rk[:], sum[:])
	if !a.cfg.Replay.Check(rk, ctime.Add(skew).UnixNano(), now.UnixNano()) {
		return nil, refuse(ReasonReplay, "authenticator of %s@%s at %s seen before", enc.CName.PrincipalNameString(), enc.CRealm, ctime.UTC().Format(time.RFC3339Nano))
	}
	name := enc.CName.PrincipalNameString()
	return &Result{Client: name + "@" + enc.CRealm, Name: name, Realm: enc.CRealm, Service: service,
		KVNO: tkt.EncPart.KVNO, EndTime: enc.EndTime}, nil
}

// key finds the keytab key for the ticket's service principal, key version
// and encryption type. Every version the keytab holds is usable: during a
// rotation it holds the old and the new one.
func (a *Acceptor) key(tkt *messages.Ticket) (types.EncryptionKey, error) {
	kt := a.cfg.Keytab.current()
	found := false
	var key types.EncryptionKey
	var ts time.Time
	for _, e := range kt.Entries {
		p := &e.Principal
		if p.Realm != tkt.Realm || !slices.Equal(p.Components, tkt.SName.NameString) {
			continue
		}
		found = true
		if e.Key.KeyType == tkt.EncPart.EType && (int(e.KVNO) == tkt.EncPart.KVNO || tkt.EncPart.KVNO == 0) &&
			(len(key.KeyValue) == 0 || e.Timestamp.After(ts)) {
			key, ts = e.Key, e.Timestamp
		}
	}
	service := tkt.SName.PrincipalNameString() + "@" + tkt.Realm
	switch {
	case !found:
		return key, refuse(ReasonWrongService, "ticket for %s, which the keytab does not hold", service)
	case len(key.KeyValue) == 0:
		return key, refuse(ReasonNoKey, "ticket for %s kvno %d etype %d: the keytab holds no such key", service, tkt.EncPart.KVNO, tkt.EncPart.EType)
	}
	return key, nil
}

// gssChecksumType is the authenticator checksum type of RFC 4121 4.1.1
// that carries the GSS-API flags.
const gssChecksumType = 0x8003

// mutual reports whether the client asked for mutual authentication:
// GSS_C_MUTUAL_FLAG in the checksum's flags (RFC 4121 4.1.1, 4.1.1.1).
func mutual(au *types.Authenticator) bool {
	c := au.Cksum.Checksum
	if au.Cksum.CksumType != gssChecksumType || len(c) < 24 {
		return false
	}
	return binary.LittleEndian.Uint32(c[20:24])&uint32(gssapi.ContextFlagMutual) != 0
}

// apRep builds the GSS-API AP-REP token answering req (RFC 4120 5.5.2,
// RFC 4121 4.1): ctime and cusec copied from the authenticator, encrypted
// with the ticket's session key, with a sequence number for the context.
func apRep(req *messages.APReq) ([]byte, error) {
	part := encAPRepPart{CTime: req.Authenticator.CTime.UTC(), Cusec: req.Authenticator.Cusec,
		SequenceNumber: req.Authenticator.SeqNumber}
	pb, err := asn1.Marshal(part)
	if err != nil {
		return nil, err
	}
	pb = addAppTag(pb, 27) // EncAPRepPart ::= [APPLICATION 27]
	key := req.Ticket.DecryptedEncPart.Key
	ed, err := crypto.GetEncryptedData(pb, key, keyusage.AP_REP_ENCPART, 0)
	if err != nil {
		return nil, err
	}
	rb, err := asn1.Marshal(apRepMsg{PVNO: 5, MsgType: 15, EncPart: ed})
	if err != nil {
		return nil, err
	}
	rb = addAppTag(rb, 15) // AP-REP ::= [APPLICATION 15]
	ob, err := asn1.Marshal(oidKRB5)
	if err != nil {
		return nil, err
	}
	tok := append(append(ob, 0x02, 0x00), rb...) // TOK_ID 02 00: AP-REP
	return addAppTag(tok, 0), nil
}

// encAPRepPart and apRepMsg are RFC 4120 5.5.2's, for marshalling (gokrb5
// only unmarshals them). The subkey is left out: the client's subkey, if
// any, is the context key (RFC 4121 2).
type encAPRepPart struct {
	CTime          time.Time `asn1:"generalized,explicit,tag:0"`
	Cusec          int       `asn1:"explicit,tag:1"`
	SequenceNumber int64     `asn1:"explicit,tag:3"`
}

type apRepMsg struct {
	PVNO    int                 `asn1:"explicit,tag:0"`
	MsgType int                 `asn1:"explicit,tag:1"`
	EncPart types.EncryptedData `asn1:"explicit,tag:2"`
}

// addAppTag wraps b in an [APPLICATION tag] constructed DER element.
func addAppTag(b []byte, tag int) []byte {
	out, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassApplication, IsCompound: true, Tag: tag, Bytes: b})
	if err != nil {
		panic(fmt.Sprintf("kerberos: DER wrap: %v", err)) // cannot fail for a byte string
	}
	return out
}
