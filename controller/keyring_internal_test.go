package controller

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	storagev1 "github.com/outpost-cdn/outpost/proto/outpost/storage/v1"
	outpostv1 "github.com/outpost-cdn/outpost/proto/outpost/v1"
)

// sealedSecretName is the full name of storage.v1.SealedSecret.
var sealedSecretName = (&storagev1.SealedSecret{}).ProtoReflect().Descriptor().FullName()

// holdsSealed reports whether messages of type md can hold a SealedSecret,
// at any depth.
func holdsSealed(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if md.FullName() == sealedSecretName {
		return true
	}
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if m := fd.Message(); m != nil && holdsSealed(m, seen) {
			return true
		}
	}
	return false
}

// TestSealedRecordsCoverStorage: every storage record type that can hold a
// sealed secret is scanned by the keyring service, so that no secret is
// left under a KEK an operator is about to remove. The edge node's own
// snapshot file is sealed by the node's keyring, not the controllers'.
func TestSealedRecordsCoverStorage(t *testing.T) {
	nodeSide := map[protoreflect.FullName]bool{
		"outpost.storage.v1.NodeSnapshot":    true,
		"outpost.storage.v1.NodeCertificate": true,
	}
	scanned := map[protoreflect.FullName]bool{}
	for _, r := range sealedRecords {
		scanned[r.newMsg().ProtoReflect().Descriptor().FullName()] = true
	}
	msgs := storagev1.File_outpost_storage_v1_storage_proto.Messages()
	n := 0
	for i := 0; i < msgs.Len(); i++ {
		md := msgs.Get(i)
		if md.FullName() == sealedSecretName || !holdsSealed(md, map[protoreflect.FullName]bool{}) {
			continue
		}
		n++
		if !scanned[md.FullName()] && !nodeSide[md.FullName()] {
			t.Errorf("%s holds a SealedSecret but no sealedRecords entry scans it: add its etcd key to sealedRecords (keyring.go)", md.FullName())
		}
	}
	if n < len(sealedRecords) {
		t.Fatalf("found %d record types with secrets, fewer than sealedRecords lists (%d)", n, len(sealedRecords))
	}
}

// TestSealedIn finds secrets at any depth, in lists too, and skips unset
// ones.
func TestSealedIn(t *testing.T) {
	sec := func(id string) *storagev1.SealedSecret {
		return &storagev1.SealedSecret{KekId: id, WrappedDataKey: []byte{1}, Ciphertext: []byte{2}}
	}
	snap := &storagev1.NodeSnapshot{
		Certificates: []*storagev1.NodeCertificate{
			{Id: "a", PrivateKey: sec("k1")},
			{Id: "b"},
			{Id: "c", PrivateKey: sec("k2")},
		},
		GossipKeyring: sec("k3"),
		Domains:       []*outpostv1.Domain{{Name: "x.example.com"}},
	}
	got := sealedIn(snap)
	if len(got) != 3 {
		t.Fatalf("found %d secrets, want 3", len(got))
	}
	// They are the message's own: changing them changes the record.
	got[0].KekId = "changed"
	if snap.GetCertificates()[0].GetPrivateKey().GetKekId() != "changed" {
		t.Fatal("sealedIn returned copies")
	}
	if n := len(sealedIn(&storagev1.StoredCsr{Csr: &outpostv1.Csr{Id: "csr-1"}})); n != 0 {
		t.Fatalf("a completed CSR holds %d secrets", n)
	}
}

// TestKeyringStatusOrder: the keyring's KEKs first, primary first, even
// when they wrap nothing; then unknown KEKs by ID.
func TestKeyringStatusOrder(t *testing.T) {
	resp := keyringStatus("k2", []string{"k2", "k1"}, map[string]uint32{"k1": 3, "zz": 1, "aa": 2})
	var got []string
	for _, u := range resp.GetUsage() {
		got = append(got, u.GetKekId())
		if want := u.GetKekId() == "k1" || u.GetKekId() == "k2"; u.GetKnown() != want {
			t.Errorf("%s known = %v", u.GetKekId(), u.GetKnown())
		}
	}
	if resp.GetPrimaryKekId() != "k2" || len(got) != 4 || got[0] != "k2" || got[1] != "k1" || got[2] != "aa" || got[3] != "zz" {
		t.Fatalf("usage order %v", got)
	}
	if resp.GetUsage()[0].GetSecrets() != 0 || resp.GetUsage()[1].GetSecrets() != 3 {
		t.Fatalf("counts %v", resp.GetUsage())
	}
}
