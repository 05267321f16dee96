package ca_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/ca/catest"
)

func certs(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// issue gives cluster-2 an intermediate valid for 30 days.
func issue(t *testing.T, mesh ca.Bundle) (*ca.Issuer, ca.Bundle) {
	t.Helper()
	issuer, err := ca.NewIssuer(mesh)
	if err != nil {
		t.Fatal(err)
	}
	b, err := issuer.Issue("cluster-2", 30*24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return issuer, b
}

// A workload certificate signed by the cluster's intermediate verifies against the mesh
// root: workloads under both control planes trust each other.
func TestLeafVerifiesAgainstMeshRoot(t *testing.T) {
	mesh := catest.MeshCACerts(365 * 24 * time.Hour)
	_, b := issue(t, mesh)

	inter := certs(t, b[ca.CACert])[0]
	block, _ := pem.Decode(b[ca.CAKey])
	interKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(7),
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}, inter, leafKey.Public(), interKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)

	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(mesh[ca.RootCert])
	for _, c := range certs(t, b[ca.CertChain]) {
		intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("leaf does not verify against the mesh root: %v", err)
	}
}

func TestChainOrderAndNoMeshKey(t *testing.T) {
	mesh := catest.MeshCACerts(365 * 24 * time.Hour)
	_, b := issue(t, mesh)
	chain := certs(t, b[ca.CertChain])
	meshChain := certs(t, mesh[ca.CertChain])
	if len(chain) != 1+len(meshChain) || !chain[0].Equal(certs(t, b[ca.CACert])[0]) {
		t.Fatalf("cert-chain must start with the intermediate, then the mesh chain: %d certs", len(chain))
	}
	for i, c := range meshChain {
		if !chain[i+1].Equal(c) {
			t.Errorf("chain[%d] is not the mesh chain's %d", i+1, i)
		}
	}
	if err := chain[0].CheckSignatureFrom(chain[1]); err != nil {
		t.Errorf("the intermediate is not signed by the mesh CA: %v", err)
	}
	if bytes.Equal(b[ca.CAKey], mesh[ca.CAKey]) || bytes.Contains(b[ca.CertChain], mesh[ca.CAKey]) {
		t.Error("the mesh CA's key left the mesh cluster")
	}
	if !bytes.Equal(b[ca.RootCert], mesh[ca.RootCert]) {
		t.Error("root-cert.pem is not the mesh root")
	}
	if inter := chain[0]; !inter.IsCA || !inter.MaxPathLenZero {
		t.Error("the intermediate must be a CA that signs only leaves")
	}
}

func TestRenewal(t *testing.T) {
	mesh := catest.MeshCACerts(365 * 24 * time.Hour)
	issuer, b := issue(t, mesh)
	window := 10 * 24 * time.Hour
	if !issuer.Current(b, window, time.Now()) {
		t.Error("a fresh intermediate should stay")
	}
	if issuer.Current(b, window, time.Now().Add(21*24*time.Hour)) {
		t.Error("an intermediate within its renewal window must be renewed")
	}
	other, err := ca.NewIssuer(catest.MeshCACerts(365 * 24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if other.Current(b, window, time.Now()) {
		t.Error("an intermediate of another mesh CA must be replaced")
	}
	_, short := issue(t, catest.MeshCACerts(24*time.Hour))
	if c := certs(t, short[ca.CACert])[0]; c.NotAfter.After(time.Now().Add(25 * time.Hour)) {
		t.Error("an intermediate outlives the mesh CA that signed it")
	}
}

// TestNoReissueLoopNearTheMeshCAsEnd shows an intermediate clamped to a mesh CA that
// expires within the renewal window stays current: issuing again could not extend it,
// and every re-issue would roll istiod.
func TestNoReissueLoopNearTheMeshCAsEnd(t *testing.T) {
	mesh := catest.MeshCACerts(10 * 24 * time.Hour) // 10 days left, renewal 30 days before the end
	issuer, b := issue(t, mesh)
	renewBefore := 30 * 24 * time.Hour
	if c := certs(t, b[ca.CACert])[0]; !c.NotAfter.Equal(issuer.NotAfter()) {
		t.Fatalf("the intermediate ends %s, the mesh CA %s: not clamped", c.NotAfter, issuer.NotAfter())
	}
	if !issuer.Current(b, renewBefore, time.Now()) {
		t.Error("a clamped intermediate is re-issued on every pass")
	}
	if issuer.Current(b, renewBefore, issuer.NotAfter().Add(time.Second)) {
		t.Error("an expired intermediate must be replaced")
	}
	longer, err := ca.NewIssuer(catest.MeshCACerts(365 * 24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if longer.Current(b, renewBefore, time.Now()) {
		t.Error("a renewed mesh CA must replace the clamped intermediate")
	}
}

func TestBrokenMeshCACertsAreRefusedWithoutQuotingTheKey(t *testing.T) {
	mesh := catest.MeshCACerts(time.Hour)
	broken := ca.Bundle{ca.CACert: mesh[ca.CACert], ca.CAKey: []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"), ca.RootCert: mesh[ca.RootCert]}
	_, err := ca.NewIssuer(broken)
	if err == nil || bytes.Contains([]byte(err.Error()), []byte("c2VjcmV0")) {
		t.Errorf("err = %v", err)
	}
	if _, err := ca.NewIssuer(ca.Bundle{}); err == nil {
		t.Error("an empty cacerts was accepted")
	}
}
