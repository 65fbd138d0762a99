;; stderr_trap: writes "boom: the guest gave up" to stderr with WASI fd_write,
;; then traps.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"name\":\"stderr_trap\",\"version\":\"1.0.0\",\"api_version\":\"1.0\"}")
  (data (i32.const 256) "boom: the guest gave up\n")
  ;; iovec {buf 256, len 24} at 512
  (data (i32.const 512) "\00\01\00\00\18\00\00\00")
  (func (export "df_abi_version") (result i32) (i32.const 1))
  (func (export "df_info") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 60)))
  (func (export "df_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need (i32.add (i32.const 2) (i32.shr_u (i32.mul (local.get $size) (i32.const 2)) (i32.const 16))))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $need) (memory.size))))))
    (i32.const 65536))
  (func (export "df_process") (param $ptr i32) (param $len i32) (result i64)
    (drop (call $fd_write (i32.const 2) (i32.const 512) (i32.const 1) (i32.const 520)))
    (unreachable))
)
