// Package wallet implements the reference page's transaction example as an
// object: balances in key-value storage, moved between accounts in a
// storage transaction that rolls back on insufficient funds.
package wallet

import (
	"context"
	"errors"
	"math"

	"connectrpc.com/connect"

	walletv1 "github.com/durablego/durable/gen/examples/wallet/v1"
	"github.com/durablego/durable/gen/examples/wallet/v1/walletv1durable"
	"github.com/durablego/durable/storage"
)

// ErrInsufficientFunds fails a transfer from an account holding less than
// the amount, with the code FailedPrecondition.
var ErrInsufficientFunds = errors.New("insufficient funds")

// errOverflow fails a deposit or transfer that would take a balance past
// the largest int64.
var errOverflow = errors.New("balance would overflow")

// Wallet implements walletv1durable.Wallet. The requests' rules (positive
// amounts, distinct accounts) are checked by the server before a method
// runs.
type Wallet struct{}

var _ walletv1durable.Wallet = Wallet{}

// balanceKey is the storage key of an account's balance, a JSON number.
func balanceKey(account string) string { return "balance:" + account }

func balance(ctx context.Context, kv *storage.KV, account string) (int64, error) {
	b, _, err := storage.GetJSON[int64](ctx, kv, balanceKey(account))
	return b, err
}

func credit(ctx context.Context, kv *storage.KV, account string, amount int64) (int64, error) {
	b, err := balance(ctx, kv, account)
	if err != nil {
		return 0, err
	}
	if b > math.MaxInt64-amount {
		return 0, connect.NewError(connect.CodeOutOfRange, errOverflow)
	}
	return b + amount, storage.PutJSON(ctx, kv, balanceKey(account), b+amount)
}

// Deposit adds the amount to the account.
func (Wallet) Deposit(ctx context.Context, o *walletv1durable.WalletObject, req *walletv1.DepositRequest) (*walletv1.DepositResponse, error) {
	b, err := credit(ctx, o.Storage, req.GetAccount(), req.GetAmount())
	if err != nil {
		return nil, err
	}
	return &walletv1.DepositResponse{Balance: b}, nil
}

// Balance reads the account; an unknown one holds 0.
func (Wallet) Balance(ctx context.Context, o *walletv1durable.WalletObject, req *walletv1.BalanceRequest) (*walletv1.BalanceResponse, error) {
	b, err := balance(ctx, o.Storage, req.GetAccount())
	if err != nil {
		return nil, err
	}
	return &walletv1.BalanceResponse{Balance: b}, nil
}

// Transfer moves the amount in one transaction, as the reference does: on
// insufficient funds it rolls the transaction back and fails.
func (Wallet) Transfer(ctx context.Context, o *walletv1durable.WalletObject, req *walletv1.TransferRequest) (*walletv1.TransferResponse, error) {
	res := &walletv1.TransferResponse{}
	err := o.Storage.Transaction(ctx, func(tx *storage.KV) error {
		from, err := balance(ctx, tx, req.GetFrom())
		if err != nil {
			return err
		}
		if from < req.GetAmount() {
			tx.Rollback()
			return connect.NewError(connect.CodeFailedPrecondition, ErrInsufficientFunds)
		}
		res.FromBalance = from - req.GetAmount()
		if err := storage.PutJSON(ctx, tx, balanceKey(req.GetFrom()), res.FromBalance); err != nil {
			return err
		}
		// Read the destination after the debit, so that even a transfer to
		// the same account (which the request's rules refuse) moves nothing.
		res.ToBalance, err = credit(ctx, tx, req.GetTo(), req.GetAmount())
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}
