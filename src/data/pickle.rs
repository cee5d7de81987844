//! A minimal reader for the Python pickles nanoGPT writes as `meta.pkl`: a dict of ints, strs and
//! nested dicts, as `pickle.dump` emits it with protocols 2 to 5. Anything else (floats, lists, objects,
//! code) is refused with an error naming the opcode, so an untrusted file can never run anything.

use std::collections::HashMap;

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str(String),
    /// Insertion order kept; a later SETITEM for an equal key overrides (see `get`).
    Dict(Vec<(Value, Value)>),
}

impl Value {
    /// The value stored under a string key of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => {
                items.iter().rev().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v)
            }
            _ => None,
        }
    }
}

// Opcodes (CPython Lib/pickle.py).
const PROTO: u8 = 0x80;
const FRAME: u8 = 0x95;
const EMPTY_DICT: u8 = b'}';
const MEMOIZE: u8 = 0x94;
const MARK: u8 = b'(';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const STOP: u8 = b'.';

fn bad(msg: impl Into<String>) -> Error {
    Error::Data(format!("meta.pkl: {}", msg.into()))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| bad(format!("truncated pickle (needed {n} bytes at offset {})", self.pos)))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn str(&mut self, n: usize) -> Result<String> {
        let at = self.pos;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| bad(format!("string at offset {at} is not valid UTF-8")))
    }
}

/// Parse a pickle into a `Value` (the object the STOP opcode returns).
pub fn parse(bytes: &[u8]) -> Result<Value> {
    let mut r = Reader { bytes, pos: 0 };
    let mut stack: Vec<Value> = Vec::new();
    // Stack heights at each MARK (CPython's "metastack").
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();

    fn pop(stack: &mut Vec<Value>) -> Result<Value> {
        stack.pop().ok_or_else(|| bad("stack underflow"))
    }
    fn top(stack: &[Value]) -> Result<&Value> {
        stack.last().ok_or_else(|| bad("stack underflow"))
    }
    fn into_dict(stack: &mut [Value], items: Vec<Value>) -> Result<()> {
        match stack.last_mut() {
            Some(Value::Dict(d)) => {
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
                Ok(())
            }
            _ => Err(bad("SETITEM(S) without a dict under it")),
        }
    }
    fn get(memo: &HashMap<u32, Value>, idx: u32) -> Result<Value> {
        match memo.get(&idx) {
            // The memo holds a snapshot, not a shared reference: a dict fetched back could be stale.
            Some(Value::Dict(_)) => Err(bad("shared references to dicts are not supported")),
            Some(v) => Ok(v.clone()),
            None => Err(bad(format!("memo key {idx} is not defined"))),
        }
    }

    loop {
        let at = r.pos;
        let op = r.u8()?;
        match op {
            PROTO => {
                let v = r.u8()?;
                if v > 5 {
                    return Err(bad(format!("unsupported pickle protocol {v}")));
                }
            }
            FRAME => {
                // Frames only group opcodes for buffered reading; the content is parsed in-line.
                r.take(8)?;
            }
            EMPTY_DICT => stack.push(Value::Dict(Vec::new())),
            MARK => marks.push(stack.len()),
            BININT1 => stack.push(Value::Int(r.u8()? as i64)),
            BININT2 => stack.push(Value::Int(r.u16()? as i64)),
            BININT => stack.push(Value::Int(r.u32()? as i32 as i64)),
            SHORT_BINUNICODE => {
                let n = r.u8()? as usize;
                stack.push(Value::Str(r.str(n)?));
            }
            BINUNICODE => {
                let n = r.u32()? as usize;
                stack.push(Value::Str(r.str(n)?));
            }
            MEMOIZE => {
                let v = top(&stack)?.clone();
                memo.insert(memo.len() as u32, v);
            }
            BINPUT | LONG_BINPUT => {
                let idx = if op == BINPUT { r.u8()? as u32 } else { r.u32()? };
                memo.insert(idx, top(&stack)?.clone());
            }
            BINGET | LONG_BINGET => {
                let idx = if op == BINGET { r.u8()? as u32 } else { r.u32()? };
                stack.push(get(&memo, idx)?);
            }
            SETITEM => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                into_dict(&mut stack, vec![k, v])?;
            }
            SETITEMS => {
                let m = marks.pop().ok_or_else(|| bad("SETITEMS without MARK"))?;
                if m > stack.len() || !(stack.len() - m).is_multiple_of(2) {
                    return Err(bad("SETITEMS with an odd number of items"));
                }
                let items = stack.split_off(m);
                into_dict(&mut stack, items)?;
            }
            STOP => {
                return match (stack.pop(), stack.is_empty()) {
                    (Some(v), true) => Ok(v),
                    _ => Err(bad("STOP with a stack that does not hold exactly one value")),
                };
            }
            other => {
                return Err(bad(format!(
                    "unsupported pickle opcode 0x{other:02x} at offset {at}; only dicts of ints and \
                     strings (as nanoGPT's prepare.py writes) can be read"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pickle.dumps({'vocab_size':3,'itos':{0:'a',1:'é',2:'中'},'stoi':{'a':0},'n':-5,'m':300,
    /// 'big':70000}, protocol=2)`: BINPUT/BINGET, BINUNICODE, SETITEM, BININT, BININT2.
    const PROTO2: &[u8] = b"\x80\x02}q\x00(X\n\x00\x00\x00vocab_sizeq\x01K\x03X\x04\x00\x00\x00itosq\x02}q\x03(K\x00X\x01\x00\x00\x00aq\x04K\x01X\x02\x00\x00\x00\xc3\xa9q\x05K\x02X\x03\x00\x00\x00\xe4\xb8\xadq\x06uX\x04\x00\x00\x00stoiq\x07}q\x08h\x04K\x00sX\x01\x00\x00\x00nq\tJ\xfb\xff\xff\xffX\x01\x00\x00\x00mq\nM,\x01X\x03\x00\x00\x00bigq\x0bJp\x11\x01\x00u.";

    #[test]
    fn reads_protocol_2_dict() {
        let v = parse(PROTO2).unwrap();
        assert_eq!(v.get("vocab_size"), Some(&Value::Int(3)));
        assert_eq!(v.get("n"), Some(&Value::Int(-5)));
        assert_eq!(v.get("m"), Some(&Value::Int(300)));
        assert_eq!(v.get("big"), Some(&Value::Int(70000)));
        let itos = v.get("itos").unwrap();
        assert_eq!(
            itos,
            &Value::Dict(vec![
                (Value::Int(0), Value::Str("a".into())),
                (Value::Int(1), Value::Str("é".into())),
                (Value::Int(2), Value::Str("中".into())),
            ])
        );
        assert_eq!(v.get("stoi"), Some(&Value::Dict(vec![(Value::Str("a".into()), Value::Int(0))])));
    }

    #[test]
    fn long_memo_opcodes() {
        // {1: 'a', 2: 'a'} with the string put at memo 512 by LONG_BINPUT and fetched by LONG_BINGET.
        let b = b"\x80\x02}(K\x01X\x01\x00\x00\x00ar\x00\x02\x00\x00K\x02j\x00\x02\x00\x00u.";
        let v = parse(b).unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![(Value::Int(1), Value::Str("a".into())), (Value::Int(2), Value::Str("a".into())),])
        );
    }

    #[test]
    fn refuses_other_opcodes_and_truncation() {
        // GLOBAL ('c'), the opcode that makes pickles dangerous.
        let e = parse(b"\x80\x02cos\nsystem\n.").unwrap_err().to_string();
        assert!(e.contains("unsupported pickle opcode 0x63"), "{e}");
        let e = parse(&PROTO2[..40]).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        assert!(parse(b"").is_err());
        assert!(parse(b"K\x01K\x02.").is_err());
    }
}
