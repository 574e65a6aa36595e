#!/usr/bin/env python3
"""Checks the operator image that hack/image/build.sh wrote, as a container runtime would use it.

    check.py --layout OUT/oci --archive OUT/citystack.tar --version 0.1.0 --deployment deploy.yaml

Reads the OCI image layout with nothing but the standard library (not the library that wrote
it, so a writer bug is not hidden by the same reader): every blob's digest and size, the
manifest and config media types, the config (user 65532:65532, entrypoint /citystack), the
layers' diff_ids. Then unpacks the layers in order into an empty root, applying whiteouts,
and runs the entrypoint from there with `--version`: as root through `chroot --userspec
65532:65532`, so only the image's files and a non-root user are involved; otherwise through
the image's own program interpreter and libraries. Also checks that the docker-archive holds
the same config and layers, and that the chart's Deployment (rendered to deploy.yaml) runs
the container as the image's user with a read-only root filesystem. Prints the image size.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
USER_ID = 65532
# Where a shell would be; the image is meant to have none.
SHELLS = ("bin/sh", "bin/bash", "usr/bin/sh", "usr/bin/bash", "bin/busybox")

passed = failed = 0


def ok(what):
    global passed
    passed += 1
    print(f"  ok    {what}")


def bad(what, detail=""):
    global failed
    failed += 1
    print(f"  FAIL  {what}")
    for line in str(detail).splitlines():
        print(f"        {line}")


def check(what, condition, detail=""):
    ok(what) if condition else bad(what, detail)
    return condition


class Layout:
    def __init__(self, path):
        self.path = path

    def blob(self, descriptor):
        """The bytes of a blob, after checking them against its descriptor's digest and size."""
        algorithm, _, hexdigest = descriptor["digest"].partition(":")
        if algorithm != "sha256":
            raise ValueError(f"digest {descriptor['digest']}: only sha256 is expected")
        with open(os.path.join(self.path, "blobs", "sha256", hexdigest), "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != hexdigest:
            raise ValueError(f"blob {hexdigest}: content does not match its digest")
        if len(data) != descriptor["size"]:
            raise ValueError(f"blob {hexdigest}: {len(data)} bytes, descriptor says {descriptor['size']}")
        return data


def safe_path(root, member_name):
    """The host path of a layer entry under root; refuses entries that would leave it."""
    parts = [p for p in member_name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError(f"layer entry {member_name!r} leaves the root")
    return os.path.join(root, *parts), parts


def remove(path):
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def apply_layer(root, data):
    """Unpacks one layer over root as the OCI image spec describes: whiteouts delete."""
    names = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as layer:
        for member in layer:
            path, parts = safe_path(root, member.name)
            if not parts:
                continue
            base = parts[-1]
            if base == ".wh..wh..opq":
                directory = os.path.dirname(path)
                for entry in os.listdir(directory):
                    remove(os.path.join(directory, entry))
                continue
            if base.startswith(".wh."):
                target = os.path.join(os.path.dirname(path), base[len(".wh."):])
                if os.path.lexists(target):
                    remove(target)
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path) and not (member.isdir() and os.path.isdir(path)):
                remove(path)
            if member.isdir():
                os.makedirs(path, exist_ok=True)
            elif member.isfile():
                with layer.extractfile(member) as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                link_path, _ = safe_path(root, member.linkname)
                os.link(link_path, path)
            else:
                raise ValueError(f"layer entry {member.name!r}: unexpected type {member.type!r}")
            if not member.issym():
                os.chmod(path, stat.S_IMODE(member.mode))
            names.append("/".join(parts))
    return names


def interpreter(binary):
    """The ELF program interpreter (PT_INTERP) of a 64-bit little-endian binary, or None."""
    with open(binary, "rb") as f:
        elf = f.read()
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError(f"{binary}: not a 64-bit little-endian ELF file")
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return elf[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()
    return None


def run_entrypoint(root, entrypoint, args):
    """Runs the entrypoint with only the image's files: chrooted as USER_ID when we are root."""
    env = {}  # nothing from this machine's environment
    chroot = shutil.which("chroot")
    if os.geteuid() == 0 and chroot:
        how = f"chroot --userspec={USER_ID}:{USER_ID}"
        cmd = [chroot, f"--userspec={USER_ID}:{USER_ID}", root, entrypoint, *args]
    else:
        binary = os.path.join(root, entrypoint.lstrip("/"))
        interp = interpreter(binary)
        if interp is None:
            how, cmd = "a static binary", [binary, *args]
        else:
            lib_dirs = sorted({os.path.dirname(os.path.join(d, f))
                               for d, _, files in os.walk(root) for f in files if ".so" in f})
            loader = [os.path.join(root, interp.lstrip("/")), "--inhibit-cache", "--library-path", ":".join(lib_dirs)]
            # The loader still searches this machine's default directories after ours, so
            # first make sure it resolves every library inside the root.
            listed = subprocess.run([*loader, "--list", binary], env=env, capture_output=True, text=True, timeout=60)
            outside = [line.strip() for line in listed.stdout.splitlines()
                       if "=>" in line and not line.split("=>")[1].strip().startswith(root)]
            if listed.returncode != 0 or outside:
                return "the image's loader", subprocess.CompletedProcess(
                    listed.args, 1, "", f"libraries not resolved inside the image: {outside or listed.stderr}")
            how = f"the image's {interp} with the image's libraries only"
            cmd = [*loader, binary, *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    return how, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", required=True)
    parser.add_argument("--archive", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--deployment", required=True, help="the chart's rendered Deployment (YAML)")
    args = parser.parse_args()

    print("== OCI image layout", args.layout)
    layout = Layout(args.layout)
    with open(os.path.join(args.layout, "oci-layout")) as f:
        check("oci-layout version 1.0.0", json.load(f).get("imageLayoutVersion") == "1.0.0")
    with open(os.path.join(args.layout, "index.json")) as f:
        index = json.load(f)
    check("index.json is an OCI index", index.get("schemaVersion") == 2
          and index.get("mediaType", OCI_INDEX) == OCI_INDEX, index)
    tagged = [m for m in index.get("manifests", [])
              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == args.version]
    if not check(f"one manifest tagged {args.version}", len(tagged) == 1, index):
        return
    manifest_descriptor = tagged[0]
    manifest = json.loads(layout.blob(manifest_descriptor))
    check("manifest media type is OCI", manifest_descriptor.get("mediaType") == OCI_MANIFEST
          and manifest.get("mediaType") == OCI_MANIFEST, manifest)
    check("config media type is OCI", manifest["config"]["mediaType"] == OCI_CONFIG, manifest["config"])
    check("layers are gzip-compressed OCI layers", all(l["mediaType"] == OCI_LAYER_GZIP
                                                        for l in manifest["layers"]), manifest["layers"])
    config_bytes = layout.blob(manifest["config"])
    config = json.loads(config_bytes)
    run_config = config.get("config", {})
    user = run_config.get("User", "")
    check(f"config User is {USER_ID}:{USER_ID}", user == f"{USER_ID}:{USER_ID}", user)
    check("config Entrypoint is [/citystack]", run_config.get("Entrypoint") == ["/citystack"], run_config)
    check("config os/architecture linux/amd64", (config.get("os"), config.get("architecture")) == ("linux", "amd64"),
          (config.get("os"), config.get("architecture")))
    layers = [layout.blob(l) for l in manifest["layers"]]
    ok(f"every blob matches its digest and size ({len(layers)} layer(s))")
    diff_ids = [f"sha256:{hashlib.sha256(gzip.decompress(l)).hexdigest()}" for l in layers]
    check("rootfs.diff_ids are the uncompressed layers' digests",
          config.get("rootfs", {}).get("diff_ids") == diff_ids, (config.get("rootfs"), diff_ids))

    print("== unpack the layers into an empty root and run the entrypoint")
    root = tempfile.mkdtemp(prefix="citystack-image-root-")
    try:
        files = []
        for layer in layers:
            files = apply_layer(root, layer)
        print("        files: " + " ".join(sorted(f for f in files if not os.path.isdir(os.path.join(root, f)))))
        check("no shell in the image", not any(os.path.lexists(os.path.join(root, s)) for s in SHELLS))
        check("/citystack is executable", os.access(os.path.join(root, "citystack"), os.X_OK))
        # The chroot'ed user must be able to reach and execute the files.
        os.chmod(root, 0o755)
        how, result = run_entrypoint(root, run_config["Entrypoint"][0], ["--version"])
        want = f"citystack {args.version}"
        check(f"/citystack --version answers {want!r} (run with {how})",
              result.returncode == 0 and result.stdout.strip() == want,
              f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print("== docker-archive", args.archive)
    with tarfile.open(args.archive) as archive:
        entries = json.load(archive.extractfile("manifest.json"))
        if check("manifest.json names one image", len(entries) == 1, entries):
            entry = entries[0]
            check(f"tagged citystack:{args.version}", entry.get("RepoTags") == [f"citystack:{args.version}"], entry)
            archived_config = archive.extractfile(entry["Config"]).read()
            check("same config as the layout", archived_config == config_bytes)
            archived_layers = [archive.extractfile(name).read() for name in entry["Layers"]]
            check("same layers as the layout", archived_layers == layers)

    print("== the chart runs the image as its user", args.deployment)
    import yaml  # PyYAML: hack/python/requirements.txt

    with open(args.deployment) as f:
        deployment = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "operator")
    context = container.get("securityContext", {})
    check("container securityContext readOnlyRootFilesystem: true", context.get("readOnlyRootFilesystem") is True, context)
    check(f"container securityContext runAsUser: {USER_ID} (the image's user)", context.get("runAsUser") == USER_ID, context)
    check(f"pod securityContext runAsUser: {USER_ID}", pod.get("securityContext", {}).get("runAsUser") == USER_ID,
          pod.get("securityContext"))
    check("the container sets no command (the image's entrypoint runs)", "command" not in container, container)

    compressed = sum(len(l) for l in layers)
    uncompressed = sum(len(gzip.decompress(l)) for l in layers)
    print(f"image size: {compressed / 2**20:.1f} MiB compressed ({compressed} bytes), "
          f"{uncompressed / 2**20:.1f} MiB uncompressed; archive {os.path.getsize(args.archive)} bytes")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # a malformed image is a failure to report, not a traceback to read
        bad(f"image check stopped: {type(error).__name__}: {error}")
    print(f"image-test: {passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 and passed > 0 else 1)
