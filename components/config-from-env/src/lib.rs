//! `wasi:config/store` (the version Spin provides) read from the environment:
//! key `kafka_rest_url` is the variable `KAFKA_REST_URL`. Spin and SpinKube
//! supply the store themselves (application variables); plain `wasmtime serve`
//! does not, so scripts/build-spin.sh plugs this component into the Spin
//! artifact to make the one for wasmtime (`wasmtime serve --env KEY=value`).

wit_bindgen::generate!({
    path: "../../wit",
    world: "config-from-env",
    generate_all,
});

use exports::wasi::config::store::{Error, Guest};

struct EnvConfig;

export!(EnvConfig);

/// The environment variable that holds `key`: Spin's variable naming
/// (lower case, `_`) upper-cased, as Spin's own environment provider does.
fn variable(key: &str) -> String {
    key.to_ascii_uppercase()
}

impl Guest for EnvConfig {
    fn get(key: String) -> Result<Option<String>, Error> {
        Ok(std::env::var(variable(&key)).ok())
    }

    fn get_all() -> Result<Vec<(String, String)>, Error> {
        Ok(std::env::vars().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect())
    }
}
