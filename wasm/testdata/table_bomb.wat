;; table_bomb: grows its table (declared with no maximum) with table.grow,
;; starting with a delta of 2^30 entries and halving it whenever table.grow
;; fails, until the table is as large as the host allows; then writes
;; "table full at <n> entries" to stderr and traps. Without a bound the
;; table reaches 2^32-1 entries: 32 GiB of host memory.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (table $t 1 funcref)
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"name\":\"table_bomb\",\"version\":\"1.0.0\",\"api_version\":\"1.0\"}")
  (data (i32.const 256) "table full at ")
  (func (export "df_abi_version") (result i32) (i32.const 1))
  (func (export "df_info") (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 59)))
  ;; the input region is page 1 (and more pages as needed)
  (func (export "df_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need (i32.add (i32.const 2) (i32.shr_u (i32.mul (local.get $size) (i32.const 2)) (i32.const 16))))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $need) (memory.size))))))
    (i32.const 65536))
  (func (export "df_process") (param $ptr i32) (param $len i32) (result i64)
    (local $delta i32) (local $n i32) (local $end i32) (local $p i32)
    (local.set $delta (i32.const 0x40000000))
    (block $full (loop $more
      (if (i32.eq (table.grow $t (ref.null func) (local.get $delta)) (i32.const -1))
        (then
          (local.set $delta (i32.shr_u (local.get $delta) (i32.const 1)))
          (br_if $full (i32.eqz (local.get $delta)))))
      (br $more)))
    ;; the decimal digits of table.size, backwards from 300, after the text
    (local.set $n (table.size $t))
    (local.set $end (i32.const 300))
    (local.set $p (local.get $end))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (memory.copy (i32.const 270) (local.get $p) (i32.sub (local.get $end) (local.get $p)))
    (local.set $end (i32.add (i32.const 270) (i32.sub (local.get $end) (local.get $p))))
    (memory.copy (local.get $end) (i32.const 320) (i32.const 9))
    ;; iovec {256, len} at 512
    (i32.store (i32.const 512) (i32.const 256))
    (i32.store (i32.const 516) (i32.sub (i32.add (local.get $end) (i32.const 9)) (i32.const 256)))
    (drop (call $fd_write (i32.const 2) (i32.const 512) (i32.const 1) (i32.const 520)))
    (unreachable))
  (data (i32.const 320) " entries\n")
)
