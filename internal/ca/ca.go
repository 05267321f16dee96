// Package ca issues, for each remote control plane, an intermediate CA signed by the
// mesh's CA, in Istio's plugged-in CA format, so workloads under the mesh control plane
// and under every remote one trust each other by default. The mesh CA's key is used
// here, in the mesh cluster, and never leaves it.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Keys of Istio's plugged-in CA Secret (cacerts).
const (
	CACert    = "ca-cert.pem"
	CAKey     = "ca-key.pem"
	CertChain = "cert-chain.pem"
	RootCert  = "root-cert.pem"
)

// Bundle is the content of a cacerts Secret.
type Bundle map[string][]byte

// Issuer is the mesh CA.
type Issuer struct {
	cert  *x509.Certificate
	key   crypto.Signer
	chain []byte // the mesh CA's own chain, up to the root
	root  []byte
}

// NewIssuer reads the mesh cluster's cacerts. The error never quotes the key.
func NewIssuer(b Bundle) (*Issuer, error) {
	for _, k := range []string{CACert, CAKey, RootCert} {
		if len(b[k]) == 0 {
			return nil, fmt.Errorf("cacerts has no %s", k)
		}
	}
	cert, err := parseCert(b[CACert])
	if err != nil {
		return nil, fmt.Errorf("cacerts %s: %w", CACert, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("cacerts %s is not a CA certificate", CACert)
	}
	key, err := parseKey(b[CAKey])
	if err != nil {
		return nil, fmt.Errorf("cacerts %s cannot be read as a private key", CAKey)
	}
	chain := b[CertChain]
	if len(chain) == 0 {
		chain = b[CACert]
	}
	return &Issuer{cert: cert, key: key, chain: chain, root: b[RootCert]}, nil
}

// Fingerprint identifies the issuer, so intermediates signed by an earlier mesh CA are
// replaced when the mesh CA changes.
func (i *Issuer) Fingerprint() string {
	sum := sha256.Sum256(i.cert.Raw)
	return hex.EncodeToString(sum[:8])
}

// Issue creates a new key and an intermediate CA certificate for one cluster, valid for
// lifetime (never past the mesh CA itself).
func (i *Issuer) Issue(clusterID string, lifetime time.Duration, now time.Time) (Bundle, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(i.cert.NotAfter) {
		notAfter = i.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: i.cert.Subject.Organization, CommonName: "Remote istiod intermediate CA " + clusterID},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.cert, key.Public(), i.key)
	if err != nil {
		return nil, fmt.Errorf("signing the intermediate CA of %s: %w", clusterID, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return Bundle{
		CACert:    certPEM,
		CAKey:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		CertChain: append(append(certPEM[:len(certPEM):len(certPEM)], bytes.TrimSpace(i.chain)...), '\n'),
		RootCert:  i.root,
	}, nil
}

// Current reports whether an issued bundle can stay: signed by this issuer, with the
// same root, and not yet within renewBefore of its end. An intermediate that already
// ends with the mesh CA stays until it expires: a new one could not end later (Issue
// clamps it), so issuing again would only roll istiod for nothing, on every pass.
func (i *Issuer) Current(b Bundle, renewBefore time.Duration, now time.Time) bool {
	cert, err := parseCert(b[CACert])
	if err != nil || !bytes.Equal(b[RootCert], i.root) {
		return false
	}
	if cert.CheckSignatureFrom(i.cert) != nil {
		return false
	}
	if !cert.NotAfter.Before(i.cert.NotAfter) {
		return now.Before(cert.NotAfter)
	}
	return now.Before(cert.NotAfter.Add(-renewBefore))
}

// NotAfter is when the mesh CA expires; no intermediate it issues lasts longer.
func (i *Issuer) NotAfter() time.Time { return i.cert.NotAfter }

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not PEM")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return nil, errors.New("unsupported key")
}
