//go:build unix

package main

import "syscall"

// ownProcessGroup keeps Ctrl-C at the terminal from reaching the manager, so that the
// demo stops it in order, as envtest does with its API servers.
func ownProcessGroup() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
