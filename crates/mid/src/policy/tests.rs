//! Tests of the whole policy: each rule, config errors, the resolver, redirects, explanations.
