package setup

import "github.com/clawgate/clawgate/caddymodule/internal/json5"

// doc is one JSON5 file with the byte spans of its values, so an edit can
// replace exactly the text of one value, or insert a member into one object,
// and leave every comment and all layout elsewhere as the user wrote it. It
// is parsed by the same parser the audit and the gate read the file with, so
// a file means the same to setup as to them.
type doc struct {
	name string
	src  []byte
	root *json5.Node
}

// parseDoc parses src into a doc.
func parseDoc(name string, src []byte) (*doc, error) {
	root, err := json5.ParseTree(name, src)
	if err != nil {
		return nil, err
	}
	return &doc{name: name, src: src, root: root}, nil
}

// lineEnd returns the offset of the line terminator that ends the line
// holding pos, or len(src).
func lineEnd(src []byte, pos int) int {
	for pos < len(src) {
		c := src[pos]
		if c == '\n' || c == '\r' {
			return pos
		}
		if c == 0xe2 && pos+2 < len(src) && src[pos+1] == 0x80 && (src[pos+2] == 0xa8 || src[pos+2] == 0xa9) {
			return pos
		}
		pos++
	}
	return pos
}

// lineStart returns the offset of the first byte of the line holding pos.
func lineStart(src []byte, pos int) int {
	for pos > 0 {
		c := src[pos-1]
		if c == '\n' || c == '\r' {
			return pos
		}
		if c == 0xa8 || c == 0xa9 {
			if pos >= 3 && src[pos-3] == 0xe2 && src[pos-2] == 0x80 {
				return pos
			}
		}
		pos--
	}
	return 0
}

func indexFrom(src []byte, from int, sub string) int {
	for i := from; i+len(sub) <= len(src); i++ {
		if string(src[i:i+len(sub)]) == sub {
			return i
		}
	}
	return -1
}
