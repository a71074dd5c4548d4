//! The activity catalog: every `user_activity` category and action the platform emits.
//!
//! The catalog is data (`data/activity-catalog.json`, copied from the platform's
//! published list), embedded at compile time and parsed once; code asks it questions
//! instead of carrying category strings of its own.

use std::{collections::HashMap, sync::LazyLock};

use serde::Deserialize;

const CATALOG_JSON: &str = include_str!("../data/activity-catalog.json");

#[derive(Debug, Deserialize)]
pub struct Category {
    pub key: String,
    pub name: String,
    pub actions: Vec<Action>,
}

#[derive(Debug, Deserialize)]
pub struct Action {
    pub key: String,
    pub name: String,
    pub description: String,
}

#[derive(Debug)]
pub struct ActivityCatalog {
    categories: Vec<Category>,
    /// category key → index into `categories`, for the per-event lookup.
    index: HashMap<String, usize>,
}

#[derive(Deserialize)]
struct CatalogFile {
    categories: Vec<Category>,
}

static CATALOG: LazyLock<ActivityCatalog> = LazyLock::new(|| {
    let file: CatalogFile =
        serde_json::from_str(CATALOG_JSON).expect("embedded activity catalog is valid JSON");
    let index = file
        .categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.key.clone(), i))
        .collect();
    ActivityCatalog {
        categories: file.categories,
        index,
    }
});

/// What the catalog says about a (category, action) pair.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    Known(&'a Action),
    UnknownCategory,
    /// The category exists but has no such action; carries the category for the message.
    UnknownAction(&'a Category),
}

impl ActivityCatalog {
    pub fn get() -> &'static ActivityCatalog {
        &CATALOG
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    pub fn category(&self, key: &str) -> Option<&Category> {
        self.index.get(key).map(|&i| &self.categories[i])
    }

    pub fn lookup(&self, category: &str, action: &str) -> Lookup<'_> {
        match self.category(category) {
            None => Lookup::UnknownCategory,
            Some(c) => match c.actions.iter().find(|a| a.key == action) {
                Some(a) => Lookup::Known(a),
                None => Lookup::UnknownAction(c),
            },
        }
    }

    /// Category keys joined for error messages.
    pub fn category_keys(&self) -> String {
        self.categories
            .iter()
            .map(|c| c.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Category {
    pub fn action_keys(&self) -> String {
        self.actions
            .iter()
            .map(|a| a.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl PartialEq for Category {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Category {}
impl PartialEq for Action {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Action {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_the_published_shape() {
        let c = ActivityCatalog::get();
        assert_eq!(c.categories().len(), 17);
        let actions: usize = c.categories().iter().map(|c| c.actions.len()).sum();
        assert_eq!(actions, 88);
        // Keys are identifiers: unique within their scope.
        let keys: std::collections::HashSet<_> = c.categories().iter().map(|c| &c.key).collect();
        assert_eq!(keys.len(), 17);
        for cat in c.categories() {
            let actions: std::collections::HashSet<_> =
                cat.actions.iter().map(|a| &a.key).collect();
            assert_eq!(
                actions.len(),
                cat.actions.len(),
                "duplicate action in {}",
                cat.key
            );
        }
    }

    #[test]
    fn lookups_distinguish_category_and_action() {
        let c = ActivityCatalog::get();
        assert!(
            matches!(c.lookup("account", "user_login"), Lookup::Known(a) if a.name == "User login")
        );
        assert!(matches!(c.lookup("recipe", "stopped"), Lookup::Known(_)));
        assert_eq!(c.lookup("nope", "user_login"), Lookup::UnknownCategory);
        assert!(
            matches!(c.lookup("account", "stopped"), Lookup::UnknownAction(cat) if cat.key == "account")
        );
    }
}
