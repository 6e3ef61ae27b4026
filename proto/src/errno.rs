//! errno-style result codes carried in replies. Values are Linux's (as
//! Ceph's are), sent negated-free: a reply's `result` is `0` or `-code`.

/// The codes an object op or command may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Errno {
    Perm = 1,
    NoEnt = 2,
    Io = 5,
    Again = 11,
    NoMem = 12,
    Access = 13,
    Busy = 16,
    Exist = 17,
    Inval = 22,
    FBig = 27,
    NoSpc = 28,
    Range = 34,
    NameTooLong = 36,
    NotEmpty = 39,
    NoData = 61,
    Overflow = 75,
    NotSup = 95,
    TimedOut = 110,
    Canceled = 125,
    /// Pool quota reached.
    DQuot = 122,
}

impl Errno {
    pub const ALL: [Errno; 20] = [
        Errno::Perm,
        Errno::NoEnt,
        Errno::Io,
        Errno::Again,
        Errno::NoMem,
        Errno::Access,
        Errno::Busy,
        Errno::Exist,
        Errno::Inval,
        Errno::FBig,
        Errno::NoSpc,
        Errno::Range,
        Errno::NameTooLong,
        Errno::NotEmpty,
        Errno::NoData,
        Errno::Overflow,
        Errno::NotSup,
        Errno::TimedOut,
        Errno::Canceled,
        Errno::DQuot,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// The reply form: `-code`.
    pub fn result(self) -> i32 {
        -(self as i32)
    }

    /// Maps a code from the wire (positive or negated); unknown codes are
    /// `None`, which callers report as EIO with the raw number.
    pub fn from_code(code: i32) -> Option<Errno> {
        let code = code.checked_abs()?;
        Errno::ALL.iter().copied().find(|e| e.code() == code)
    }

    /// The symbolic name (`ENOENT`), as tools print it.
    pub fn name(self) -> &'static str {
        match self {
            Errno::Perm => "EPERM",
            Errno::NoEnt => "ENOENT",
            Errno::Io => "EIO",
            Errno::Again => "EAGAIN",
            Errno::NoMem => "ENOMEM",
            Errno::Access => "EACCES",
            Errno::Busy => "EBUSY",
            Errno::Exist => "EEXIST",
            Errno::Inval => "EINVAL",
            Errno::FBig => "EFBIG",
            Errno::NoSpc => "ENOSPC",
            Errno::Range => "ERANGE",
            Errno::NameTooLong => "ENAMETOOLONG",
            Errno::NotEmpty => "ENOTEMPTY",
            Errno::NoData => "ENODATA",
            Errno::Overflow => "EOVERFLOW",
            Errno::NotSup => "EOPNOTSUPP",
            Errno::TimedOut => "ETIMEDOUT",
            Errno::Canceled => "ECANCELED",
            Errno::DQuot => "EDQUOT",
        }
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_both_signs() {
        for e in Errno::ALL {
            assert_eq!(Errno::from_code(e.code()), Some(e));
            assert_eq!(Errno::from_code(e.result()), Some(e));
        }
        assert_eq!(Errno::from_code(0), None);
        assert_eq!(Errno::from_code(i32::MIN), None);
        assert_eq!(Errno::NoEnt.result(), -2);
        assert_eq!(Errno::Canceled.code(), 125);
    }
}
