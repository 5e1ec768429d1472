//go:build !unix

package directory

import "os"

// fileID returns zeros where the platform has no inode numbers in
// os.FileInfo: there, size and modification time alone identify a version.
func fileID(os.FileInfo) (dev, ino uint64) { return 0, 0 }

// keepOwner does nothing where files have no Unix owner.
func keepOwner(*os.File, os.FileInfo) {}
