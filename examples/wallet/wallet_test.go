package wallet_test

import (
	"context"
	"errors"
	"testing"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"

	"github.com/durablego/durable/examples/internal/exampletest"
	"github.com/durablego/durable/examples/wallet"
	walletv1 "github.com/durablego/durable/gen/examples/wallet/v1"
	"github.com/durablego/durable/gen/examples/wallet/v1/walletv1durable"
)

var ctx = context.Background()

func start(t *testing.T, dir string) (*exampletest.Server, *walletv1durable.WalletNamespace) {
	t.Helper()
	srv := exampletest.Start(t, dir)
	wallets, err := walletv1durable.RegisterWallet(srv.Server, wallet.Wallet{})
	if err != nil {
		t.Fatal(err)
	}
	return srv, wallets
}

func deposit(t *testing.T, w walletv1durable.WalletStub, account string, amount int64) int64 {
	t.Helper()
	r, err := w.Deposit(ctx, &walletv1.DepositRequest{Account: account, Amount: amount})
	if err != nil {
		t.Fatalf("Deposit %d to %s: %v", amount, account, err)
	}
	return r.GetBalance()
}

func transfer(t *testing.T, w walletv1durable.WalletStub, from, to string, amount int64) *walletv1.TransferResponse {
	t.Helper()
	r, err := w.Transfer(ctx, &walletv1.TransferRequest{From: from, To: to, Amount: amount})
	if err != nil {
		t.Fatalf("Transfer %d from %s to %s: %v", amount, from, to, err)
	}
	return r
}

func balance(t *testing.T, w walletv1durable.WalletStub, account string) int64 {
	t.Helper()
	r, err := w.Balance(ctx, &walletv1.BalanceRequest{Account: account})
	if err != nil {
		t.Fatalf("Balance of %s: %v", account, err)
	}
	return r.GetBalance()
}

func wantBalances(t *testing.T, what string, w walletv1durable.WalletStub, alice, bob int64) {
	t.Helper()
	if a, b := balance(t, w, "alice"), balance(t, w, "bob"); a != alice || b != bob {
		t.Fatalf("%s: alice %d, bob %d; want %d, %d", what, a, b, alice, bob)
	}
}

func TestDepositBalanceTransfer(t *testing.T) {
	_, wallets := start(t, t.TempDir())
	w := wallets.Get(wallets.IDFromName("family"))

	wantBalances(t, "new wallet", w, 0, 0)
	if b := deposit(t, w, "alice", 100); b != 100 {
		t.Fatalf("Deposit 100: balance %d", b)
	}
	if b := deposit(t, w, "alice", 50); b != 150 {
		t.Fatalf("Deposit 50 more: balance %d, want 150", b)
	}

	r := transfer(t, w, "alice", "bob", 70)
	if r.GetFromBalance() != 80 || r.GetToBalance() != 70 {
		t.Fatalf("Transfer 70: from %d, to %d; want 80, 70", r.GetFromBalance(), r.GetToBalance())
	}
	wantBalances(t, "after transfer", w, 80, 70)

	// The whole balance may move, to the last cent.
	r = transfer(t, w, "bob", "alice", 70)
	if r.GetFromBalance() != 0 || r.GetToBalance() != 150 {
		t.Fatalf("Transfer of bob's whole balance: from %d, to %d; want 0, 150", r.GetFromBalance(), r.GetToBalance())
	}
	wantBalances(t, "after transfer back", w, 150, 0)

	// Another wallet has its own accounts.
	wantBalances(t, "another wallet", wallets.Get(wallets.IDFromName("other")), 0, 0)
}

func TestTransferWithInsufficientFundsChangesNothing(t *testing.T) {
	_, wallets := start(t, t.TempDir())
	w := wallets.Get(wallets.IDFromName("w"))
	deposit(t, w, "alice", 30)
	deposit(t, w, "bob", 5)

	_, err := w.Transfer(ctx, &walletv1.TransferRequest{From: "alice", To: "bob", Amount: 31})
	exampletest.WantError(t, "Transfer 31 of 30", err, connect.CodeFailedPrecondition, "insufficient funds")
	if !errors.Is(err, wallet.ErrInsufficientFunds) {
		t.Errorf("errors.Is(err, ErrInsufficientFunds) = false for %v", err)
	}
	wantBalances(t, "after the refused transfer", w, 30, 5)

	// From an account that does not exist: nothing to move, nothing created.
	_, err = w.Transfer(ctx, &walletv1.TransferRequest{From: "carol", To: "bob", Amount: 1})
	exampletest.WantError(t, "Transfer from an empty account", err, connect.CodeFailedPrecondition, "insufficient funds")
	if c, b := balance(t, w, "carol"), balance(t, w, "bob"); c != 0 || b != 5 {
		t.Fatalf("after a transfer from an empty account: carol %d, bob %d; want 0, 5", c, b)
	}

	// The wallet keeps working.
	transfer(t, w, "alice", "bob", 30)
	wantBalances(t, "after a transfer that fits", w, 0, 35)
}

// TestInvalidRequestsAreRefused needs the server to validate requests
// against their protovalidate rules.
func TestInvalidRequestsAreRefused(t *testing.T) {
	_, wallets := start(t, t.TempDir())
	w := wallets.Get(wallets.IDFromName("w"))
	deposit(t, w, "alice", 10)
	deposit(t, w, "bob", 10)

	for _, c := range []struct {
		name string
		call func() error
	}{
		{"Deposit of 0", func() error {
			_, err := w.Deposit(ctx, &walletv1.DepositRequest{Account: "alice", Amount: 0})
			return err
		}},
		{"Deposit of -5", func() error {
			_, err := w.Deposit(ctx, &walletv1.DepositRequest{Account: "alice", Amount: -5})
			return err
		}},
		{"Deposit to no account", func() error {
			_, err := w.Deposit(ctx, &walletv1.DepositRequest{Amount: 5})
			return err
		}},
		// Unchecked, a negative transfer would move money the other way.
		{"Transfer of -5", func() error {
			_, err := w.Transfer(ctx, &walletv1.TransferRequest{From: "alice", To: "bob", Amount: -5})
			return err
		}},
		{"Transfer of 0", func() error {
			_, err := w.Transfer(ctx, &walletv1.TransferRequest{From: "alice", To: "bob"})
			return err
		}},
		{"Transfer to the same account", func() error {
			_, err := w.Transfer(ctx, &walletv1.TransferRequest{From: "alice", To: "alice", Amount: 5})
			return err
		}},
	} {
		exampletest.WantError(t, c.name, c.call(), connect.CodeInvalidArgument, "")
		wantBalances(t, "after "+c.name, w, 10, 10)
	}
}

// TestRequestRules checks the rules themselves, without a server.
func TestRequestRules(t *testing.T) {
	for _, c := range []struct {
		msg   *walletv1.TransferRequest
		valid bool
	}{
		{&walletv1.TransferRequest{From: "a", To: "b", Amount: 1}, true},
		{&walletv1.TransferRequest{From: "a", To: "b", Amount: 0}, false},
		{&walletv1.TransferRequest{From: "a", To: "b", Amount: -1}, false},
		{&walletv1.TransferRequest{From: "a", To: "a", Amount: 1}, false},
		{&walletv1.TransferRequest{From: "", To: "b", Amount: 1}, false},
	} {
		if err := protovalidate.Validate(c.msg); (err == nil) != c.valid {
			t.Errorf("Validate(%v) = %v, want valid %v", c.msg, err, c.valid)
		}
	}
}

func TestBalancesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	srv, wallets := start(t, dir)
	w := wallets.Get(wallets.IDFromName("savings"))
	deposit(t, w, "alice", 1000)
	transfer(t, w, "alice", "bob", 250)
	_, err := w.Transfer(ctx, &walletv1.TransferRequest{From: "bob", To: "alice", Amount: 251})
	exampletest.WantError(t, "Transfer 251 of 250", err, connect.CodeFailedPrecondition, "insufficient funds")
	srv.Shutdown(t)

	_, wallets = start(t, dir)
	w = wallets.Get(wallets.IDFromName("savings"))
	wantBalances(t, "after restart", w, 750, 250)
	transfer(t, w, "bob", "alice", 250)
	wantBalances(t, "after a transfer on the restarted server", w, 1000, 0)
}
