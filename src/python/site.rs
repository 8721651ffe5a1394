//! Where an array sits in a step, for error messages: "param 2 of
//! param_groups[1]", "the grad of param 2 of param_groups[1]", "state
//! 'exp_avg' of param 2 of param_groups[1]". Labels are plain `Copy` values and
//! are only formatted when an error is raised, so naming costs nothing on the
//! success path.

use std::fmt;

/// A param's position: its index in its group's `'params'` list, and the group's
/// index (None for calls that have no groups, such as LBFGS's flat param list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Site {
    pub group: Option<usize>,
    pub position: usize,
}

impl Site {
    /// A param of a call without groups.
    pub fn flat(position: usize) -> Self {
        Site { group: None, position }
    }

    pub fn in_group(group: usize, position: usize) -> Self {
        Site { group: Some(group), position }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "param {}", self.position)?;
        if let Some(group) = self.group {
            write!(f, " of param_groups[{group}]")?;
        }
        Ok(())
    }
}

/// Which array of a param it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Param,
    Grad,
    /// A state array, by its state-dict key.
    State(&'static str),
    /// Anything else, by a short description.
    Other(&'static str),
    /// An entry of a call's flat list of arrays (the gradients to clip, the
    /// averaged arrays), named by its kind and its position alone: "grad 2".
    Entry(&'static str),
}

/// An array of a step and the param it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label {
    pub role: Role,
    pub site: Site,
}

impl Label {
    pub fn new(role: Role, site: Site) -> Self {
        Label { role, site }
    }

    /// Entry `position` of a call's flat list of `what`s: "grad 2".
    pub fn entry(what: &'static str, position: usize) -> Self {
        Label { role: Role::Entry(what), site: Site::flat(position) }
    }

    /// Orders labels by param, then param before grad before state.
    pub fn sort_key(&self) -> (Site, Role) {
        (self.site, self.role)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.role {
            Role::Param => write!(f, "{}", self.site),
            Role::Grad => write!(f, "the grad of {}", self.site),
            Role::State(key) => write!(f, "state '{key}' of {}", self.site),
            Role::Other(what) => write!(f, "{what} of {}", self.site),
            Role::Entry(what) => write!(f, "{what} {}", self.site.position),
        }
    }
}
