//go:build unix

package directory

import (
	"os"
	"syscall"
)

// fileID returns the device and inode of the file fi describes: a file
// replaced by rename has a new inode even when its size and modification
// time match the old one's.
func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		// Dev is int32 on some platforms, hence the conversions.
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}

// keepOwner gives f the owner and group of the file fi describes, as far as
// the process may: root can, an owner can keep its own user and any of its
// groups. A file replaced by rename otherwise belongs to whoever ran the
// command, and a gateway reading it as another user may lose access.
func keepOwner(f *os.File, fi os.FileInfo) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = f.Chown(int(st.Uid), int(st.Gid)) // best effort: see above
	}
}
