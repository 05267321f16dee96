package remotecluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kinds of failure to talk to a remote API server, each with its own advice: a link
// that is down is not a bad kubeconfig, and an expired token is not missing RBAC.
const (
	// FailureUnreachable: the API server did not answer (refused, timed out, reset).
	FailureUnreachable = "Unreachable"
	// FailureUnauthorized: the API server refused the credentials (HTTP 401).
	FailureUnauthorized = "Unauthorized"
	// FailureForbidden: the credentials are valid but lack permissions (HTTP 403).
	FailureForbidden = "Forbidden"
)

// ConnectFailure says which kind of failure err is.
func ConnectFailure(err error) string {
	switch {
	case apierrors.IsUnauthorized(err):
		return FailureUnauthorized
	case apierrors.IsForbidden(err):
		return FailureForbidden
	}
	return FailureUnreachable
}

// DescribeFailure says in a few words what did not answer and how, for a condition
// message. It names the API server's address (not a secret) and never credentials.
func DescribeFailure(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return StatusMessage(status)
	}
	var uerr *url.Error
	host := ""
	if errors.As(err, &uerr) {
		if u, perr := url.Parse(uerr.URL); perr == nil {
			host = u.Host
		}
	}
	what := "the API server"
	if host != "" {
		what = "the API server at " + host
	}
	var opErr *net.OpError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return what + " refused the connection"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Sprintf("%s did not answer within %s", what, RemoteRequestTimeout)
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed):
		return what + " closed the connection"
	case errors.As(err, &opErr):
		return fmt.Sprintf("%s cannot be reached: %v", what, opErr.Err)
	}
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}

// Unanswered reports whether err says an API server did not answer: the connection was
// refused, reset or closed, or the request ran out of time. An API server that answered
// with an error is not one of these.
func Unanswered(err error) bool {
	var opErr *net.OpError
	return err != nil && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) || errors.As(err, &opErr))
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// StatusMessage is an API error's message for a condition. A Kubernetes API server
// answers with a Status whose message names objects and fields. Anything else (a
// kubeconfig can point anywhere) answers with a body client-go puts into the message;
// that body is not repeated, so a remote secret cannot make the operator copy an
// internal endpoint's answers into status.
func StatusMessage(status apierrors.APIStatus) string {
	st := status.Status()
	if st.Details != nil {
		for _, c := range st.Details.Causes {
			if c.Type == metav1.CauseTypeUnexpectedServerResponse {
				return fmt.Sprintf("the server answered HTTP %d (%s) with a body that is not a Kubernetes status; it is not shown", st.Code, st.Reason)
			}
		}
	}
	return st.Message
}
