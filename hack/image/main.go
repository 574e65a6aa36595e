// Command image writes the citystack operator image from a prepared root filesystem, without
// a Docker daemon: one layer holding the root, a config that runs /citystack as user
// 65532:65532, written as an OCI image layout directory and as a docker-archive tarball
// (what `docker save` writes). hack/image/build.sh prepares the root.
//
//	go run . -root DIR -layout OUT_DIR -archive OUT.tar -repository citystack -tag 0.1.0
//
// The output depends only on the root's content, names and modes and on -epoch: owners are
// 0:0 and every time is -epoch, so the same binary gives the same digest.
package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The distroless "nonroot" user; the chart's securityContext asks for the same uid.
const user = "65532:65532"

const entrypoint = "/citystack"

func main() {
	root := flag.String("root", "", "directory whose content becomes the image's filesystem")
	layoutDir := flag.String("layout", "", "OCI image layout directory to write (replaced)")
	archive := flag.String("archive", "", "docker-archive tarball to write (optional)")
	repository := flag.String("repository", "citystack", "repository named in the tarball and the layout's ref")
	tag := flag.String("tag", "dev", "image tag (also org.opencontainers.image.version)")
	epoch := flag.Int64("epoch", 0, "timestamp of every file and of the config, in Unix seconds")
	flag.Parse()
	if *root == "" || *layoutDir == "" {
		fmt.Fprintln(os.Stderr, "usage: image -root DIR -layout OUT_DIR [-archive OUT.tar] [-repository R] [-tag T] [-epoch S]")
		os.Exit(2)
	}
	if err := write(*root, *layoutDir, *archive, *repository, *tag, time.Unix(*epoch, 0).UTC()); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func write(root, layoutDir, archive, repository, tag string, created time.Time) error {
	arch, err := architecture(filepath.Join(root, entrypoint))
	if err != nil {
		return err
	}
	layerTar, err := tarRoot(root, created)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: arch,
		OS:           "linux",
		Created:      v1.Time{Time: created},
		Config: v1.Config{
			User:         user,
			Entrypoint:   []string{entrypoint},
			Cmd:          []string{"run"},
			WorkingDir:   "/",
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Labels: map[string]string{
				"org.opencontainers.image.title":   "citystack",
				"org.opencontainers.image.version": tag,
			},
		},
	})
	if err != nil {
		return err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "hack/image/build.sh", Comment: "citystack and the files it needs to run"},
	})
	if err != nil {
		return err
	}

	if err := os.RemoveAll(layoutDir); err != nil {
		return err
	}
	path, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		return err
	}
	// skopeo's `oci:DIR:TAG` and oras find the image by this annotation.
	if err := path.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		return err
	}
	if archive != "" {
		ref, err := name.NewTag(repository + ":" + tag)
		if err != nil {
			return err
		}
		if err := tarball.WriteToFile(archive, ref, img); err != nil {
			return err
		}
	}

	digest, err := img.Digest()
	if err != nil {
		return err
	}
	compressed, err := layer.Size()
	if err != nil {
		return err
	}
	fmt.Printf("image %s:%s %s (%s), layer %d bytes compressed, %d uncompressed\n",
		repository, tag, digest, arch, compressed, len(layerTar))
	return nil
}

// architecture is the OCI name of the entrypoint's machine, so the config cannot disagree
// with the binary it carries.
func architecture(binary string) (string, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return "", fmt.Errorf("entrypoint %s: %w", binary, err)
	}
	defer f.Close()
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	default:
		return "", fmt.Errorf("entrypoint %s: unsupported machine %s", binary, f.Machine)
	}
}

// tarRoot is the layer: every entry under root in lexical order, owned by 0:0, with the
// file's permission bits and mtime `created`. Only directories, regular files and symlinks
// are allowed: anything else in the root is a mistake of the caller.
func tarRoot(root string, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    filepath.ToSlash(rel),
			Mode:    int64(info.Mode().Perm()),
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		switch {
		case info.Mode().IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case info.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = info.Size()
		case info.Mode()&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: not a directory, regular file or symlink", path)
		}
		if err := w.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
