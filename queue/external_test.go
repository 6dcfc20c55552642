package queue

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

func TestAtLeast(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want bool
	}{{"2.9.10", false}, {"2.10.99", false}, {"2.11.0", true}, {"2.15.2", true}, {"3.0.0", true}, {"2.11.0-beta.1", true}} {
		if got := atLeast(tt.v, MinServerVersion); got != tt.want {
			t.Errorf("atLeast(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

// serve starts a real server with the given options on a loopback port.
func serve(t *testing.T, o *server.Options) string {
	t.Helper()
	o.Host, o.Port, o.NoLog, o.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConnectExternal_Auth connects with each way of authenticating against
// a server that requires it, and fails with the wrong secret.
func TestConnectExternal_Auth(t *testing.T) {
	userKP, _ := nkeys.CreateUser()
	userPub, _ := userKP.PublicKey()
	userSeed, _ := userKP.Seed()
	otherKP, _ := nkeys.CreateUser()
	otherSeed, _ := otherKP.Seed()
	creds, opts := operator(t)
	untrusted, _ := operator(t)
	ca, cert, key, tlsOpts := pki(t)

	for _, tt := range []struct {
		name      string
		server    *server.Options
		good, bad ExternalOptions
	}{
		{"token", &server.Options{Authorization: "s3cret"},
			ExternalOptions{TokenFile: writeFile(t, "tok", []byte("s3cret\n"))},
			ExternalOptions{TokenFile: writeFile(t, "tok", []byte("wrong"))}},
		{"user and password", &server.Options{Username: "syncer", Password: "pw"},
			ExternalOptions{User: "syncer", PasswordFile: writeFile(t, "pw", []byte("pw\n"))},
			ExternalOptions{User: "syncer", PasswordFile: writeFile(t, "pw", []byte("nope"))}},
		{"nkey", &server.Options{Nkeys: []*server.NkeyUser{{Nkey: userPub}}},
			ExternalOptions{NkeyFile: writeFile(t, "seed", userSeed)},
			ExternalOptions{NkeyFile: writeFile(t, "seed", otherSeed)}},
		{"creds", opts,
			ExternalOptions{CredsFile: creds},
			ExternalOptions{CredsFile: untrusted}},
		{"tls with client cert", tlsOpts,
			ExternalOptions{TLSCA: ca, TLSCert: cert, TLSKey: key},
			ExternalOptions{TLSCA: ca}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url := serve(t, tt.server)
			if tt.server.TLSConfig != nil {
				url = strings.Replace(url, "nats://", "tls://", 1)
			}
			tt.good.URLs, tt.bad.URLs = []string{url}, []string{url}
			tt.good.Timeout, tt.bad.Timeout = 2*time.Second, 2*time.Second
			nc, err := connectExternal(tt.good)
			if err != nil {
				t.Fatalf("good credentials: %v", err)
			}
			nc.Close()
			if nc, err := connectExternal(tt.bad); err == nil {
				nc.Close()
				t.Fatal("bad credentials connected")
			} else {
				t.Logf("bad credentials: %v", err)
			}
		})
	}
}

func TestExternalOptions_Check(t *testing.T) {
	tok := writeFile(t, "tok", []byte("x"))
	for _, tt := range []struct {
		o    ExternalOptions
		want string
	}{
		{ExternalOptions{TokenFile: tok, User: "u", PasswordFile: tok}, "one of"},
		{ExternalOptions{User: "u"}, "go together"},
		{ExternalOptions{TLSCert: tok}, "go together"},
		{ExternalOptions{CredsFile: "/nonexistent/creds"}, "creds file"},
	} {
		if err := tt.o.Check(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check(%+v) = %v, want %q", tt.o, err, tt.want)
		}
	}
}

func TestConnectExternal_Unreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + ln.Addr().String()
	ln.Close()
	_, err = connectExternal(ExternalOptions{URLs: []string{url}, Timeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("err = %v, want unreachable", err)
	}
}

// operator sets up decentralised auth: an operator trusting one account
// with one user, whose creds file is returned with the server options.
func operator(t *testing.T) (string, *server.Options) {
	t.Helper()
	opKP, _ := nkeys.CreateOperator()
	opPub, _ := opKP.PublicKey()
	accKP, _ := nkeys.CreateAccount()
	accPub, _ := accKP.PublicKey()
	userKP, _ := nkeys.CreateUser()
	userPub, _ := userKP.PublicKey()
	userSeed, _ := userKP.Seed()
	opc := jwt.NewOperatorClaims(opPub)
	if _, err := opc.Encode(opKP); err != nil {
		t.Fatal(err)
	}
	accJWT, err := jwt.NewAccountClaims(accPub).Encode(opKP)
	if err != nil {
		t.Fatal(err)
	}
	uc := jwt.NewUserClaims(userPub)
	uc.IssuerAccount = accPub
	userJWT, err := uc.Encode(accKP)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(userJWT, userSeed)
	if err != nil {
		t.Fatal(err)
	}
	res := &server.MemAccResolver{}
	if err := res.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "user.creds", creds), &server.Options{TrustedOperators: []*jwt.OperatorClaims{opc}, AccountResolver: res}
}

// pki makes a CA, a server certificate for 127.0.0.1 and a client
// certificate, and server options that require a client certificate.
func pki(t *testing.T) (ca, cert, key string, o *server.Options) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syncer test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage) (string, string) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprint("syncer-", serial)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(k)
		return writeFile(t, "cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			writeFile(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	}
	ca = writeFile(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	srvCert, srvKey := issue(2, x509.ExtKeyUsageServerAuth)
	cert, key = issue(3, x509.ExtKeyUsageClientAuth)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: srvCert, KeyFile: srvKey, CaFile: ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	return ca, cert, key, &server.Options{TLSConfig: tc, TLSVerify: true, TLSTimeout: 2}
}
