fn main() {
    println!("matih: under construction");
}
