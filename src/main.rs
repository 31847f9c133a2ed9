fn main() {
    std::process::exit(bllvm_node::cli::main());
}
