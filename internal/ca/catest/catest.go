// Package catest makes a mesh CA for tests: a root and a mesh intermediate in Istio's
// plugged-in CA format, as a mesh operator would put into the mesh cluster's cacerts.
package catest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"time"

	"github.com/meshfleet/remote-istiod-operator/internal/ca"
)

func certificate(tmpl, parent *x509.Certificate, pub any, signer any) ([]byte, *x509.Certificate) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		panic(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), cert
}

// MeshCACerts returns a fresh root and mesh CA, valid for validFor.
func MeshCACerts(validFor time.Duration) ca.Bundle {
	now := time.Now()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"mesh"}, CommonName: "mesh root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validFor * 2), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	rootPEM, root := certificate(rootTmpl, rootTmpl, rootKey.Public(), rootKey)

	meshKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	meshTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{Organization: []string{"mesh"}, CommonName: "mesh CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validFor), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	meshPEM, _ := certificate(meshTmpl, root, meshKey.Public(), rootKey)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(meshKey)
	return ca.Bundle{
		ca.CACert:    meshPEM,
		ca.CAKey:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		ca.CertChain: append(append([]byte{}, meshPEM...), rootPEM...),
		ca.RootCert:  rootPEM,
	}
}
