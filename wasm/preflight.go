package wasm

import (
	"bytes"
	"encoding/binary"
	"math"
)

// Limits of what one module may make the host allocate (docs/security.md,
// "WebAssembly sandbox"). The preflight enforces them on the module bytes
// before wazero decodes or compiles anything.
const (
	// DefaultMaxModuleSize is the largest module a Runtime loads: 64 MiB,
	// the plugin store's own limit (wasmstore.DefaultMaxModuleSize).
	DefaultMaxModuleSize = 64 << 20
	// DefaultMaxTableEntries bounds the entries of all the tables of one
	// instance together: 1,048,576 entries of 8 bytes, 8 MiB of host memory
	// per instance. A module whose tables' declared minimums add up to more
	// is refused; every table gets a declared maximum within the bound, so
	// that table.grow past it returns -1.
	DefaultMaxTableEntries = 1 << 20
	// MaxTableEntriesLimit is the largest table bound a Runtime accepts:
	// 16,777,216 entries, 128 MiB per instance.
	MaxTableEntriesLimit = 1 << 24
	// MaxTables is the most tables a module may define.
	MaxTables = 8
	// MaxFunctionLocals is the most locals a function may have, its
	// parameters included. wazero accepts 2^32-1 and allocates for each
	// local when it decodes and compiles the function.
	MaxFunctionLocals = 50_000
)

// Counts that wazero allocates for as soon as it reads them, before it
// knows whether the bytes behind them exist: every vector's count must fit
// the bytes left in its section (each entry takes at least one byte), so
// what wazero allocates stays proportional to the module's size, and these
// bound the counts that cost host memory per instance or per compiled
// module. They are far above what the toolchains produce: a 3.3 MB Go
// module has 2,172 functions, 8 globals and 37,194 data segments.
const (
	maxTypes            = 1 << 16
	maxImports          = 1 << 10
	maxFunctions        = 1 << 20 // imported and defined
	maxGlobals          = 1 << 16
	maxExports          = 1 << 16
	maxElementSegments  = 1 << 16
	maxElements         = 1 << 21 // entries of all element segments together
	maxDataSegments     = 1 << 20
	maxNames            = 1 << 21 // entries of the name section's maps together
	maxConstExprOpcodes = 16
)

// limits are what the preflight checks a module against.
type limits struct {
	maxSize          int
	memoryLimitPages uint32
	maxTableEntries  uint32
	// policyPages, when not 0, is the module's own memory cap (its
	// policy, below memoryLimitPages): a minimum above it is refused; a
	// declared maximum above it is capped when the memory is made.
	policyPages uint32
	// grants are the module's capabilities: which imports of HostModule
	// it may have.
	grants grants
}

// Section ids of the binary format.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// sectionRank orders the known sections as the binary format requires
// (the tag section between memory and global, data count between element
// and code); 0 for an unknown id.
var sectionRank = [...]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5,
	secTag: 6, secGlobal: 7, secExport: 8, secStart: 9, secElement: 10,
	secDataCount: 11, secCode: 12, secData: 13,
}

var sectionName = [...]string{
	secCustom: "custom", secType: "type", secImport: "import", secFunction: "function",
	secTable: "table", secMemory: "memory", secGlobal: "global", secExport: "export",
	secStart: "start", secElement: "element", secCode: "code", secData: "data",
	secDataCount: "data count", secTag: "tag",
}

// Value and reference types of WebAssembly 2.0, the features the runtime
// enables (wazero's CoreFeaturesV2).
const (
	typeI32       = 0x7f
	typeI64       = 0x7e
	typeF32       = 0x7d
	typeF64       = 0x7c
	typeV128      = 0x7b
	typeFuncref   = 0x70
	typeExternref = 0x6f
)

var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// preflight checks module against lim before wazero sees it, and returns
// the bytes to compile: module itself, or a copy whose table section gives
// every table a declared maximum within lim.maxTableEntries (the rest of
// the bytes unchanged). It reads the section layout of the binary format
// and the contents of every section except the function bodies'
// instructions, which wazero validates; anything it does not understand is
// refused rather than passed on. It never panics; it allocates a few bytes
// per type and function, and the copy it returns.
//
// The error wraps ErrInvalidModule (malformed, or beyond WebAssembly 2.0),
// ErrLimit (over one of the limits above; it also matches
// ErrInvalidModule) or ErrForbiddenImport (an import the sandbox does not
// provide).
func preflight(module []byte, digest string, lim limits) ([]byte, error) {
	p := &preflighter{d: decoder{b: module, end: len(module)}, digest: digest, lim: lim}
	if len(module) > lim.maxSize {
		return nil, p.limit("%d bytes, above the limit of %d", len(module), lim.maxSize)
	}
	if !bytes.HasPrefix(module, wasmHeader) {
		if bytes.HasPrefix(module, wasmHeader[:4]) {
			return nil, p.invalid("binary format version %x, want 1", module[4:min(8, len(module))])
		}
		return nil, p.invalid("not a WebAssembly binary (no \\0asm header)")
	}
	p.d.off = len(wasmHeader)
	if err := p.sections(); err != nil {
		return nil, err
	}
	return p.boundTables(module), nil
}

// preflighter is the state of one preflight.
type preflighter struct {
	d      decoder
	digest string
	lim    limits

	// typeParams holds each type's parameter count.
	typeParams []uint32
	// funcTypes holds each defined function's type index.
	funcTypes []uint32
	// importedFuncs counts imported functions.
	importedFuncs uint32
	// tables are the table section's tables; tableSec is the section's
	// extent in the module, [start, end), from its id byte.
	tables   []table
	tableSec [2]int
	// codeCount is the code section's count, -1 without one.
	codeCount int64
	// dataCount is the data count section's count, -1 without one.
	dataCount int64
	// elements and names count entries across segments and maps.
	elements, names uint64
}

// table is a table of the table section.
type table struct {
	refType byte
	min     uint32
	max     uint32
	hasMax  bool
}

func (p *preflighter) invalid(format string, args ...any) error {
	return loadError(ErrInvalidModule, p.digest, "at byte %d: "+format, append([]any{p.d.off}, args...)...)
}

func (p *preflighter) limit(format string, args ...any) error {
	return loadError(ErrLimit, p.digest, format, args...)
}

func (p *preflighter) forbidden(format string, args ...any) error {
	return loadError(ErrForbiddenImport, p.digest, format, args...)
}

// sections walks the sections in order, checking each.
func (p *preflighter) sections() error {
	p.codeCount, p.dataCount = -1, -1
	lastRank := 0
	for p.d.off < len(p.d.b) {
		start := p.d.off
		id, err := p.byte()
		if err != nil {
			return err
		}
		size, err := p.u32()
		if err != nil {
			return err
		}
		if uint64(size) > uint64(len(p.d.b)-p.d.off) {
			return p.invalid("section %d declares %d bytes, %d are left", id, size, len(p.d.b)-p.d.off)
		}
		end := p.d.off + int(size)
		if id != secCustom {
			if int(id) >= len(sectionRank) || sectionRank[id] == 0 {
				return p.invalid("unknown section id %d", id)
			}
			if sectionRank[id] <= lastRank {
				return p.invalid("%s section out of order or repeated", sectionName[id])
			}
			lastRank = sectionRank[id]
		}
		p.d.end = end
		if err := p.section(id, start, end); err != nil {
			return err
		}
		if p.d.off != end {
			return p.invalid("%s section declares %d bytes, its contents take %d", sectionName[id], size, p.d.off-(end-int(size)))
		}
		p.d.end = len(p.d.b)
	}
	if p.codeCount < 0 && len(p.funcTypes) > 0 {
		return p.invalid("%d functions declared, no code section", len(p.funcTypes))
	}
	return nil
}

func (p *preflighter) section(id byte, start, end int) error {
	switch id {
	case secCustom:
		return p.custom()
	case secType:
		return p.types()
	case secImport:
		return p.imports()
	case secFunction:
		return p.functions()
	case secTable:
		p.tableSec = [2]int{start, end}
		return p.tableSection()
	case secMemory:
		return p.memories()
	case secGlobal:
		return p.globals()
	case secExport:
		return p.exports()
	case secStart:
		_, err := p.u32()
		return err
	case secElement:
		return p.elementSegments()
	case secDataCount:
		n, err := p.u32()
		if err != nil {
			return err
		}
		if n > maxDataSegments {
			return p.limit("%d data segments, above the limit of %d", n, maxDataSegments)
		}
		p.dataCount = int64(n)
		return nil
	case secCode:
		return p.code()
	case secData:
		return p.dataSegments()
	case secTag:
		return p.invalid("tag section: the exception-handling proposal is not enabled")
	}
	return p.invalid("unknown section id %d", id)
}

// count reads a vector's count: at most one entry per byte left in the
// section, and at most limit.
func (p *preflighter) count(what string, limit uint32) (uint32, error) {
	n, err := p.u32()
	if err != nil {
		return 0, err
	}
	if left := p.d.end - p.d.off; uint64(n) > uint64(left) {
		return 0, p.invalid("%d %s declared in %d bytes", n, what, left)
	}
	if n > limit {
		return 0, p.limit("%d %s, above the limit of %d", n, what, limit)
	}
	return n, nil
}

func (p *preflighter) types() error {
	n, err := p.count("types", maxTypes)
	if err != nil {
		return err
	}
	p.typeParams = make([]uint32, 0, n)
	for i := range n {
		form, err := p.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return p.invalid("type %d: form %#x, want a function type (0x60)", i, form)
		}
		params, err := p.valueTypes("parameters")
		if err != nil {
			return err
		}
		if _, err := p.valueTypes("results"); err != nil {
			return err
		}
		p.typeParams = append(p.typeParams, params)
	}
	return nil
}

// valueTypes reads a vector of value types and returns its length.
func (p *preflighter) valueTypes(what string) (uint32, error) {
	n, err := p.count(what, MaxFunctionLocals)
	if err != nil {
		return 0, err
	}
	for range n {
		if _, err := p.valueType(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (p *preflighter) valueType() (byte, error) {
	t, err := p.byte()
	if err != nil {
		return 0, err
	}
	switch t {
	case typeI32, typeI64, typeF32, typeF64, typeV128, typeFuncref, typeExternref:
		return t, nil
	}
	return 0, p.invalid("value type %#x is not one of WebAssembly 2.0", t)
}

func (p *preflighter) refType() (byte, error) {
	t, err := p.byte()
	if err != nil {
		return 0, err
	}
	if t != typeFuncref && t != typeExternref {
		return 0, p.invalid("reference type %#x, want funcref or externref", t)
	}
	return t, nil
}

// imports checks every import against the sandbox: functions of
// wasi_snapshot_preview1 that the runtime provides, and those of
// HostModule that the module's policy grants, nothing else.
func (p *preflighter) imports() error {
	n, err := p.count("imports", maxImports)
	if err != nil {
		return err
	}
	for range n {
		modb, err := p.bytes()
		if err != nil {
			return err
		}
		nameb, err := p.bytes()
		if err != nil {
			return err
		}
		mod, name := printable(modb), printable(nameb)
		kind, err := p.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00:
			if _, err := p.u32(); err != nil {
				return err
			}
			if err := importAllowed(mod, name, p.lim.grants); err != nil {
				return p.forbidden("%s", err)
			}
			p.importedFuncs++
		case 0x01:
			return p.forbidden("table %s.%s: the sandbox provides no tables; define the table in the module", mod, name)
		case 0x02:
			return p.forbidden("memory %s.%s: a plugin must define and export its own memory", mod, name)
		case 0x03:
			return p.forbidden("global %s.%s: the sandbox provides no globals", mod, name)
		case 0x04:
			return p.forbidden("tag %s.%s: the sandbox provides no tags", mod, name)
		default:
			return p.invalid("import %s.%s of unknown kind %#x", mod, name, kind)
		}
	}
	return nil
}

func (p *preflighter) functions() error {
	n, err := p.count("functions", maxFunctions)
	if err != nil {
		return err
	}
	if uint64(n)+uint64(p.importedFuncs) > maxFunctions {
		return p.limit("%d functions, above the limit of %d", uint64(n)+uint64(p.importedFuncs), maxFunctions)
	}
	p.funcTypes = make([]uint32, n)
	for i := range p.funcTypes {
		if p.funcTypes[i], err = p.u32(); err != nil {
			return err
		}
		if p.funcTypes[i] >= uint32(len(p.typeParams)) {
			return p.invalid("function %d has type %d of %d", i, p.funcTypes[i], len(p.typeParams))
		}
	}
	return nil
}

func (p *preflighter) tableSection() error {
	n, err := p.count("tables", MaxTables)
	if err != nil {
		return err
	}
	p.tables = make([]table, 0, n)
	var sum uint64
	for i := range n {
		lead, err := p.byte()
		if err != nil {
			return err
		}
		if lead == 0x40 {
			return p.invalid("table %d has an initializer expression: the function-references proposal is not enabled", i)
		}
		p.d.off--
		var t table
		if t.refType, err = p.refType(); err != nil {
			return err
		}
		flags, err := p.byte()
		if err != nil {
			return err
		}
		if flags > 1 {
			return p.invalid("table %d: limits flags %#x, want 0 or 1 (tables are neither shared nor 64-bit)", i, flags)
		}
		if t.min, err = p.u32(); err != nil {
			return err
		}
		if t.hasMax = flags == 1; t.hasMax {
			if t.max, err = p.u32(); err != nil {
				return err
			}
			if t.max < t.min {
				return p.invalid("table %d: maximum %d below its minimum %d", i, t.max, t.min)
			}
		}
		sum += uint64(t.min)
		p.tables = append(p.tables, t)
	}
	if sum > uint64(p.lim.maxTableEntries) {
		return p.limit("tables declare %d entries, above the limit of %d (%d MiB of host memory per instance)",
			sum, p.lim.maxTableEntries, uint64(p.lim.maxTableEntries)*8>>20)
	}
	return nil
}

func (p *preflighter) memories() error {
	n, err := p.count("memories", 1)
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	flags, err := p.byte()
	if err != nil {
		return err
	}
	if flags > 1 {
		return p.invalid("memory limits flags %#x, want 0 or 1 (no shared or 64-bit memory)", flags)
	}
	minPages, err := p.u32()
	if err != nil {
		return err
	}
	limit := p.lim.memoryLimitPages
	if minPages > limit {
		return p.limit("memory declares a minimum of %d pages, above the %d-page limit", minPages, limit)
	}
	if pol := p.lim.policyPages; pol != 0 && minPages > pol {
		return p.limit("memory declares a minimum of %d pages, above the %d-page limit of the module's policy", minPages, pol)
	}
	if flags == 1 {
		maxPages, err := p.u32()
		if err != nil {
			return err
		}
		if maxPages > limit {
			return p.limit("memory declares a maximum of %d pages, above the %d-page limit", maxPages, limit)
		}
		if maxPages < minPages {
			return p.invalid("memory maximum %d below its minimum %d", maxPages, minPages)
		}
	}
	return nil
}

func (p *preflighter) globals() error {
	n, err := p.count("globals", maxGlobals)
	if err != nil {
		return err
	}
	for range n {
		if _, err := p.valueType(); err != nil {
			return err
		}
		mut, err := p.byte()
		if err != nil {
			return err
		}
		if mut > 1 {
			return p.invalid("global mutability %#x", mut)
		}
		if err := p.constExpr(); err != nil {
			return err
		}
	}
	return nil
}

func (p *preflighter) exports() error {
	n, err := p.count("exports", maxExports)
	if err != nil {
		return err
	}
	for range n {
		if _, err := p.bytes(); err != nil {
			return err
		}
		kind, err := p.byte()
		if err != nil {
			return err
		}
		if kind > 0x03 {
			return p.invalid("export of unknown kind %#x", kind)
		}
		if _, err := p.u32(); err != nil {
			return err
		}
	}
	return nil
}

func (p *preflighter) elementSegments() error {
	n, err := p.count("element segments", maxElementSegments)
	if err != nil {
		return err
	}
	for range n {
		flags, err := p.u32()
		if err != nil {
			return err
		}
		if flags > 7 {
			return p.invalid("element segment flags %d", flags)
		}
		// Bit 0: passive or declarative; bit 1: with a table index (active)
		// or declarative (passive); bit 2: entries are expressions.
		active := flags&1 == 0
		if active && flags&2 != 0 {
			if _, err := p.u32(); err != nil { // table index
				return err
			}
		}
		if active {
			if err := p.constExpr(); err != nil { // offset
				return err
			}
		}
		if flags&3 != 0 { // element kind or reference type
			if flags&4 == 0 {
				kind, err := p.byte()
				if err != nil {
					return err
				}
				if kind != 0 {
					return p.invalid("element kind %#x, want 0", kind)
				}
			} else if _, err := p.refType(); err != nil {
				return err
			}
		}
		entries, err := p.count("element segment entries", maxElements)
		if err != nil {
			return err
		}
		if p.elements += uint64(entries); p.elements > maxElements {
			return p.limit("element segments hold more than %d entries", maxElements)
		}
		for range entries {
			if flags&4 == 0 {
				_, err = p.u32() // function index
			} else {
				err = p.constExpr()
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// code checks each function's locals; the instructions are wazero's to
// validate.
func (p *preflighter) code() error {
	n, err := p.count("function bodies", maxFunctions)
	if err != nil {
		return err
	}
	if int(n) != len(p.funcTypes) {
		return p.invalid("%d functions declared, %d bodies", len(p.funcTypes), n)
	}
	p.codeCount = int64(n)
	sectionEnd := p.d.end
	defer func() { p.d.end = sectionEnd }()
	for i := range n {
		size, err := p.u32()
		if err != nil {
			return err
		}
		if uint64(size) > uint64(sectionEnd-p.d.off) {
			return p.invalid("function %d: body of %d bytes, %d are left", i, size, sectionEnd-p.d.off)
		}
		bodyEnd := p.d.off + int(size)
		p.d.end = bodyEnd
		decls, err := p.count("local declarations", MaxFunctionLocals)
		if err != nil {
			return err
		}
		locals := uint64(p.typeParams[p.funcTypes[i]])
		for range decls {
			k, err := p.u32()
			if err != nil {
				return err
			}
			if _, err := p.valueType(); err != nil {
				return err
			}
			if locals += uint64(k); locals > MaxFunctionLocals {
				return p.limit("function %d has more than %d locals (parameters included)", uint64(p.importedFuncs)+uint64(i), MaxFunctionLocals)
			}
		}
		if p.d.off == bodyEnd {
			return p.invalid("function %d: empty body", i)
		}
		p.d.off = bodyEnd
		p.d.end = sectionEnd
	}
	return nil
}

func (p *preflighter) dataSegments() error {
	n, err := p.count("data segments", maxDataSegments)
	if err != nil {
		return err
	}
	if p.dataCount >= 0 && int64(n) != p.dataCount {
		return p.invalid("%d data segments, the data count section says %d", n, p.dataCount)
	}
	for range n {
		flags, err := p.u32()
		if err != nil {
			return err
		}
		switch flags {
		case 0:
			err = p.constExpr()
		case 1:
		case 2:
			if _, err = p.u32(); err == nil { // memory index
				err = p.constExpr()
			}
		default:
			return p.invalid("data segment flags %d", flags)
		}
		if err != nil {
			return err
		}
		if _, err := p.bytes(); err != nil {
			return err
		}
	}
	return nil
}

// custom checks a custom section: its name, and the maps of the "name"
// section, which wazero always decodes.
func (p *preflighter) custom() error {
	name, err := p.bytes()
	if err != nil {
		return err
	}
	if string(name) != "name" {
		p.d.off = p.d.end
		return nil
	}
	sectionEnd := p.d.end
	defer func() { p.d.end = sectionEnd }()
	for p.d.off < sectionEnd {
		id, err := p.byte()
		if err != nil {
			return err
		}
		size, err := p.u32()
		if err != nil {
			return err
		}
		if uint64(size) > uint64(sectionEnd-p.d.off) {
			return p.invalid("name subsection %d declares %d bytes, %d are left", id, size, sectionEnd-p.d.off)
		}
		p.d.end = p.d.off + int(size)
		switch id {
		case 0: // module name
			_, err = p.bytes()
		case 1: // function names
			err = p.nameMap()
		case 2: // local names
			var n uint32
			if n, err = p.nameCount(); err != nil {
				return err
			}
			for range n {
				if _, err = p.u32(); err != nil {
					return err
				}
				if err = p.nameMap(); err != nil {
					return err
				}
			}
		default: // skipped by wazero
			p.d.off = p.d.end
		}
		if err != nil {
			return err
		}
		if p.d.off != p.d.end {
			return p.invalid("name subsection %d does not end where it declares", id)
		}
		p.d.end = sectionEnd
	}
	return nil
}

func (p *preflighter) nameMap() error {
	n, err := p.nameCount()
	if err != nil {
		return err
	}
	for range n {
		if _, err := p.u32(); err != nil {
			return err
		}
		if _, err := p.bytes(); err != nil {
			return err
		}
	}
	return nil
}

func (p *preflighter) nameCount() (uint32, error) {
	n, err := p.count("names", maxNames)
	if err != nil {
		return 0, err
	}
	if p.names += uint64(n); p.names > maxNames {
		return 0, p.limit("the name section holds more than %d names", maxNames)
	}
	return n, nil
}

// constExpr skips a constant expression of WebAssembly 2.0 (no extended
// constants): a few constant instructions and end.
func (p *preflighter) constExpr() error {
	for range maxConstExprOpcodes {
		op, err := p.byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x0b: // end
			return nil
		case 0x41: // i32.const
			err = p.skipLEB(5)
		case 0x42: // i64.const
			err = p.skipLEB(10)
		case 0x43: // f32.const
			err = p.skip(4)
		case 0x44: // f64.const
			err = p.skip(8)
		case 0x23, 0xd2: // global.get, ref.func
			_, err = p.u32()
		case 0xd0: // ref.null
			_, err = p.refType()
		case 0xfd: // v128.const
			var sub byte
			if sub, err = p.byte(); err == nil && sub != 0x0c {
				return p.invalid("vector opcode %#x in a constant expression", sub)
			}
			if err == nil {
				err = p.skip(16)
			}
		default:
			return p.invalid("opcode %#x in a constant expression", op)
		}
		if err != nil {
			return err
		}
	}
	return p.invalid("constant expression of more than %d instructions", maxConstExprOpcodes)
}

// printable returns a name for messages: at most 64 bytes of it.
func printable(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}

// bytes reads a length within the section and as many bytes.
func (p *preflighter) bytes() ([]byte, error) {
	n, err := p.u32()
	if err != nil {
		return nil, err
	}
	if left := p.d.end - p.d.off; uint64(n) > uint64(left) {
		return nil, p.invalid("%d bytes declared, %d are left", n, left)
	}
	b := p.d.b[p.d.off : p.d.off+int(n)]
	p.d.off += int(n)
	return b, nil
}

func (p *preflighter) byte() (byte, error) {
	b, ok := p.d.byte()
	if !ok {
		return 0, p.invalid("unexpected end")
	}
	return b, nil
}

func (p *preflighter) u32() (uint32, error) {
	v, ok := p.d.u32()
	if !ok {
		return 0, p.invalid("bad or truncated LEB128 integer")
	}
	return v, nil
}

func (p *preflighter) skipLEB(maxLen int) error {
	for range maxLen {
		b, err := p.byte()
		if err != nil {
			return err
		}
		if b&0x80 == 0 {
			return nil
		}
	}
	return p.invalid("LEB128 integer longer than %d bytes", maxLen)
}

func (p *preflighter) skip(n int) error {
	if p.d.end-p.d.off < n {
		return p.invalid("unexpected end")
	}
	p.d.off += n
	return nil
}

// boundTables returns module with every table declaring a maximum within
// the bound: each keeps its minimum, and the entries the minimums leave are
// shared equally among the tables; a table declaring a smaller maximum keeps
// it. The maximums add up to at most the bound, so table.grow beyond returns
// -1 instead of allocating. When every table already declares a maximum
// within its share, module is returned as is; otherwise a copy with the
// table section re-encoded.
func (p *preflighter) boundTables(module []byte) []byte {
	if len(p.tables) == 0 {
		return module
	}
	var sum uint64
	for _, t := range p.tables {
		sum += uint64(t.min)
	}
	share := (uint64(p.lim.maxTableEntries) - sum) / uint64(len(p.tables))
	changed := false
	for i := range p.tables {
		t := &p.tables[i]
		bound := uint32(min(uint64(t.min)+share, math.MaxUint32))
		if !t.hasMax || t.max > bound {
			t.max, t.hasMax, changed = bound, true, true
		}
	}
	if !changed {
		return module
	}
	var body []byte
	body = binary.AppendUvarint(body, uint64(len(p.tables)))
	for _, t := range p.tables {
		body = append(body, t.refType, 0x01)
		body = binary.AppendUvarint(body, uint64(t.min))
		body = binary.AppendUvarint(body, uint64(t.max))
	}
	start, end := p.tableSec[0], p.tableSec[1]
	out := make([]byte, 0, len(module)+len(body)+8)
	out = append(out, module[:start]...)
	out = append(out, secTable)
	out = binary.AppendUvarint(out, uint64(len(body)))
	out = append(out, body...)
	out = append(out, module[end:]...)
	return out
}

// decoder reads the binary format: b[off:end] is what is left of the
// current section (or body, or subsection).
type decoder struct {
	b        []byte
	off, end int
}

func (d *decoder) byte() (byte, bool) {
	if d.off >= d.end {
		return 0, false
	}
	b := d.b[d.off]
	d.off++
	return b, true
}

// u32 reads an unsigned LEB128 integer of at most 32 bits in at most 5
// bytes, as the binary format requires (the unused bits of the fifth byte
// zero).
func (d *decoder) u32() (uint32, bool) {
	var v uint32
	for i := range 5 {
		b, ok := d.byte()
		if !ok {
			return 0, false
		}
		if i == 4 && b > 0x0f {
			return 0, false
		}
		v |= uint32(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return v, true
		}
	}
	return 0, false // not reached: the fifth byte has no continuation bit
}
