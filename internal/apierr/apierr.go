// Package apierr carries Outpost's domain errors to the gRPC edge. Lower
// layers return an *Error (or wrap one with %w); the interceptors in this
// package turn it into a gRPC status with a google.rpc.ErrorInfo detail whose
// Reason is machine-readable (for example "DomainAlreadyExist"). Anything that
// is not an *Error or a gRPC status becomes Internal, without its text, so
// internal details never reach a client.
package apierr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the ErrorInfo.Domain of every Outpost error.
const ErrorDomain = "outpost.dev"

// Error is a domain error with the gRPC code and reason it crosses the API as.
type Error struct {
	Code     codes.Code
	Reason   string
	Message  string
	Metadata map[string]string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Reason, e.Message) }

// Is makes errors.Is match two *Error values with the same reason, so a
// sentinel such as ErrNotFound-style values can be compared.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Reason == e.Reason && t.Code == e.Code
	}
	return false
}

// GRPCStatus lets status.FromError and status.Code see the code and reason.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Message)
	if e.Reason == "" {
		return st
	}
	withInfo, err := st.WithDetails(&errdetails.ErrorInfo{Reason: e.Reason, Domain: ErrorDomain, Metadata: e.Metadata})
	if err != nil {
		return st
	}
	return withInfo
}

// New returns an *Error.
func New(code codes.Code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// With returns a copy of e with one more metadata entry.
func (e *Error) With(key, value string) *Error {
	md := make(map[string]string, len(e.Metadata)+1)
	for k, v := range e.Metadata {
		md[k] = v
	}
	md[key] = value
	c := *e
	c.Metadata = md
	return &c
}

// Shorthands for the common codes.
func InvalidArgument(reason, format string, args ...any) *Error {
	return New(codes.InvalidArgument, reason, format, args...)
}

func NotFound(reason, format string, args ...any) *Error {
	return New(codes.NotFound, reason, format, args...)
}

func AlreadyExists(reason, format string, args ...any) *Error {
	return New(codes.AlreadyExists, reason, format, args...)
}

func FailedPrecondition(reason, format string, args ...any) *Error {
	return New(codes.FailedPrecondition, reason, format, args...)
}

func PermissionDenied(reason, format string, args ...any) *Error {
	return New(codes.PermissionDenied, reason, format, args...)
}

func Unauthenticated(reason, format string, args ...any) *Error {
	return New(codes.Unauthenticated, reason, format, args...)
}

func ResourceExhausted(reason, format string, args ...any) *Error {
	return New(codes.ResourceExhausted, reason, format, args...)
}

func Aborted(reason, format string, args ...any) *Error {
	return New(codes.Aborted, reason, format, args...)
}

func Unavailable(reason, format string, args ...any) *Error {
	return New(codes.Unavailable, reason, format, args...)
}

// ToStatus converts any error to the error a gRPC handler returns. An *Error
// anywhere in the chain keeps its code and reason; a gRPC status error passes
// through; context errors become Canceled or DeadlineExceeded; anything else
// is logged and becomes a bare Internal.
func ToStatus(log *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae.GRPCStatus().Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	if log != nil {
		log.Error("internal error", "method", method, "err", err)
	}
	return (&Error{Code: codes.Internal, Reason: ReasonInternal, Message: "internal error"}).GRPCStatus().Err()
}

// UnaryServerInterceptor converts handler errors with ToStatus. It must be
// the outermost interceptor so that errors from the others are converted too.
func UnaryServerInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer recoverTo(log, info.FullMethod, &err)
		resp, err = handler(ctx, req)
		if err != nil {
			return nil, ToStatus(log, info.FullMethod, err)
		}
		return resp, nil
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func StreamServerInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer recoverTo(log, info.FullMethod, &err)
		return ToStatus(log, info.FullMethod, handler(srv, ss))
	}
}

// recoverTo turns a handler panic into Internal, logged with its stack, so one
// bad request cannot take the server down.
func recoverTo(log *slog.Logger, method string, err *error) {
	if r := recover(); r != nil {
		if log != nil {
			log.Error("panic in handler", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		}
		*err = (&Error{Code: codes.Internal, Reason: ReasonInternal, Message: "internal error"}).GRPCStatus().Err()
	}
}

// Reason returns the ErrorInfo reason of an error returned by a gRPC call
// (or of an *Error), or "" when it has none.
func Reason(err error) string {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Reason
	}
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// Describe renders an error from a gRPC call as one line for people:
// "NotFound (DomainNotFound): domain a.example.com not found".
func Describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	if r := Reason(err); r != "" {
		return fmt.Sprintf("%s (%s): %s", st.Code(), r, st.Message())
	}
	return fmt.Sprintf("%s: %s", st.Code(), st.Message())
}
