//! Prints the ModelDeployment CRD; `kandle-operator crd` prints the same.
fn main() {
    print!("{}", kandle_crds::crd_yaml());
}
