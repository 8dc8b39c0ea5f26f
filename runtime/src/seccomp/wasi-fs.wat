;; The WASI file operations the test guests of tests/fixtures never make, for the guest_seccomp
;; tests: in the working directory (the preopen named `.`), mkdir, create, write, truncate, sync,
;; readdir, set times, symlink, readlink, rename, unlink, rmdir and stat. Prints "fs ok"; a
;; failing step exits with 10 + its number.
(module
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $truncate (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_sync" (func $sync (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_datasync" (func $datasync (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times" (func $times (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_readlink" (func $readlink (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $unlink (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory" (func $rmdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $stat (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $prestat_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))

  (memory (export "memory") 1)
  ;; 0: iovec, 8: counts, 16: opened fd, 32: prestat, 40: its name. Strings from 64,
  ;; buffers from 1024.
  (data (i32.const 64) "d")
  (data (i32.const 72) "d/f")
  (data (i32.const 80) "d/l")
  (data (i32.const 88) "d/g")
  (data (i32.const 96) "f")
  (data (i32.const 104) "data")
  (data (i32.const 112) "fs ok\n")

  (func $check (param $errno i32) (param $step i32)
    (if (local.get $errno) (then (call $exit (i32.add (i32.const 10) (local.get $step))))))

  ;; The preopen named `.`; exits with 10 if there is none among fds 3-31.
  (func $cwd (result i32) (local $fd i32)
    (local.set $fd (i32.const 3))
    (loop $next
      (if (i32.eqz (call $prestat (local.get $fd) (i32.const 32)))
        (then
          (if (i32.eq (i32.load (i32.const 36)) (i32.const 1))
            (then
              (drop (call $prestat_name (local.get $fd) (i32.const 40) (i32.const 1)))
              (if (i32.eq (i32.load8_u (i32.const 40)) (i32.const 46))
                (then (return (local.get $fd))))))))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $fd) (i32.const 32))))
    (call $exit (i32.const 10))
    (unreachable))

  (func (export "_start") (local $fd i32) (local $dir i32)
    (local.set $dir (call $cwd))
    (call $check (call $mkdir (local.get $dir) (i32.const 64) (i32.const 1)) (i32.const 1))
    ;; O_CREAT, every right
    (call $check (call $open (local.get $dir) (i32.const 0) (i32.const 72) (i32.const 3)
      (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 16)) (i32.const 2))
    (local.set $fd (i32.load (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 104))
    (i32.store (i32.const 4) (i32.const 4))
    (call $check (call $write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)) (i32.const 3))
    (call $check (call $truncate (local.get $fd) (i64.const 2)) (i32.const 4))
    (call $check (call $sync (local.get $fd)) (i32.const 5))
    (call $check (call $datasync (local.get $fd)) (i32.const 6))
    (call $check (call $close (local.get $fd)) (i32.const 7))
    ;; O_DIRECTORY, the fd_readdir right
    (call $check (call $open (local.get $dir) (i32.const 0) (i32.const 64) (i32.const 1)
      (i32.const 2) (i64.const 0x4000) (i64.const 0) (i32.const 0) (i32.const 16)) (i32.const 8))
    (local.set $fd (i32.load (i32.const 16)))
    (call $check (call $readdir (local.get $fd) (i32.const 1024) (i32.const 1024) (i64.const 0)
      (i32.const 8)) (i32.const 9))
    (call $check (call $close (local.get $fd)) (i32.const 10))
    ;; ATIM_NOW | MTIM_NOW
    (call $check (call $times (local.get $dir) (i32.const 0) (i32.const 72) (i32.const 3)
      (i64.const 0) (i64.const 0) (i32.const 10)) (i32.const 11))
    (call $check (call $symlink (i32.const 96) (i32.const 1) (local.get $dir) (i32.const 80)
      (i32.const 3)) (i32.const 12))
    (call $check (call $readlink (local.get $dir) (i32.const 80) (i32.const 3) (i32.const 1024)
      (i32.const 64) (i32.const 8)) (i32.const 13))
    (call $check (call $rename (local.get $dir) (i32.const 72) (i32.const 3) (local.get $dir)
      (i32.const 88) (i32.const 3)) (i32.const 14))
    (call $check (call $stat (local.get $dir) (i32.const 0) (i32.const 88) (i32.const 3)
      (i32.const 1024)) (i32.const 15))
    (call $check (call $unlink (local.get $dir) (i32.const 80) (i32.const 3)) (i32.const 16))
    (call $check (call $unlink (local.get $dir) (i32.const 88) (i32.const 3)) (i32.const 17))
    (call $check (call $rmdir (local.get $dir) (i32.const 64) (i32.const 1)) (i32.const 18))
    (i32.store (i32.const 0) (i32.const 112))
    (i32.store (i32.const 4) (i32.const 6))
    (call $check (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)) (i32.const 19)))
)
